#!/usr/bin/env bash
# Runs benchmark scripts one after another, each only once the machine has cooled down.
#
# The 1-minute load average decays for about two minutes after a benchmark ends; a script
# started before then would find its own predecessor's load and (rightly) refuse to write its
# section (res2net/bench/quiet.py). Each argument is one command line, run from the
# repository root with the project's interpreter:
#
#   bash benchmarks/run_quiet.sh "benchmarks/serve_load.py" "benchmarks/on_device.py"
#
# Nothing else may run on the machine meanwhile: no test suites, no builds.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QUIET=${QUIET:-0.4}   # start a script only below this 1-minute load average
status=0
for cmd in "$@"; do
    while awk -v q="$QUIET" '{exit !($1 > q)}' /proc/loadavg; do sleep 10; done
    echo "== $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg): $cmd"
    start=$(date +%s)
    # shellcheck disable=SC2086  # each argument is a command line to split
    $PY $cmd || { echo "!! failed ($?): $cmd"; status=1; }
    echo "== took $(( $(date +%s) - start )) s: $cmd"
done
exit $status
