#!/usr/bin/env bash
# Set up everything this project needs, idempotently:
#   .venv      the package (editable) with all extras, on torch 2.14.1 / torchvision 0.29.1
#   .venv-ref  PaddleClas 2.6.0 on paddlepaddle 3.3.1, for reference checks (own numpy/opencv pins)
#   --browser  also headless Chromium + chromedriver (Debian packages), for the upload-page
#              test only (scripts/test.sh passes it; the demo does not need a browser)
# Usage: bash scripts/setup.sh [--no-ref] [--browser]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
# setuptools' build-time banners (e.g. "Editable installation") are Python warnings.
export PYTHONWARNINGS=ignore
NO_REF=0 BROWSER=0
for arg in "$@"; do
  case "$arg" in
    --no-ref) NO_REF=1 ;;
    --browser) BROWSER=1 ;;
    *) echo "setup: unknown option $arg (use --no-ref, --browser)" >&2; exit 2 ;;
  esac
done

# Headless Chromium + chromedriver for the upload-page test (tests/test_server_browser.py).
if [ "$BROWSER" = 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium + chromium-driver (browser test)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes \
      apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: chromium/chromedriver missing; install them (Debian: apt-get install chromium chromium-driver)" >&2
  fi
fi

# Run a pip command with its noise lines filtered out; pip's own exit status decides, so a
# failed install stops the set-up with pip's message (grep's status, 1 when pip printed
# nothing else, is ignored).
quiet_pip() {
  set +e
  "$@" 2>&1 | grep -v '^WARNING: Location'
  local status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "setup: failed (exit $status): $*" >&2
    exit "$status"
  fi
}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
quiet_pip .venv/bin/python -m pip install -q --upgrade pip
quiet_pip .venv/bin/python -m pip install -q -e ".[all]"
.venv/bin/python -c "import res2net, torch; print('res2net', res2net.__version__, 'torch', torch.__version__)"

if [ "$NO_REF" = 0 ]; then
  if [ ! -x .venv-ref/bin/python ] || ! .venv-ref/bin/python -c "import paddle, paddleclas" 2>/dev/null; then
    "$PY" -m venv .venv-ref
    quiet_pip .venv-ref/bin/python -m pip install -q "paddlepaddle==3.3.1" "paddleclas==2.6.0"
  fi
  .venv-ref/bin/python -c "import paddle; print('reference: paddlepaddle', paddle.__version__)" 2>/dev/null
fi
