#!/usr/bin/env bash
# Set up (scripts/setup.sh --browser) and run the whole test suite, reference checks included,
# on pytest-xdist workers (RES2NET_TEST_WORKERS, default 2; each test file stays on one worker,
# so a file's module fixtures are built once). Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -m "not slow"       # the quick subset for development
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test: set-up (.venv, .venv-ref, chromium for the browser test) ..."
bash scripts/setup.sh --browser
# Compiler, CMake, OpenCV, nlohmann-json, OpenSSL for the C++ predictor's tests (tests/test_cpp.py
# builds it with scripts/build_cpp.sh); the demo needs none of them.
echo "test: C++ build packages ..."
bash scripts/build_cpp.sh --deps-only
echo "test: ruff ..."
.venv/bin/ruff check res2net tests benchmarks
workers=${RES2NET_TEST_WORKERS:-2}
echo "test: pytest on $workers workers ..."
# --durations=25: the slowest tests, listed at the end of every run (CI logs included).
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile --durations=25 "$@"
