#!/usr/bin/env bash
# Set up everything this project needs, idempotently:
#   .venv      the package (editable) with all extras, on torch 2.14.1 / torchvision 0.29.1
#   .venv-ref  PaddleClas 2.6.0 on paddlepaddle 3.3.1, for reference checks (own numpy/opencv pins)
# Usage: bash scripts/setup.sh [--no-ref]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

# Headless Chromium + chromedriver for the upload-page test (tests/test_server_browser.py).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: chromium/chromedriver missing; install them (Debian: apt-get install chromium chromium-driver)" >&2
  fi
fi

# Compiler, CMake, OpenCV, nlohmann-json, OpenSSL for the C++ predictor (scripts/build_cpp.sh).
bash scripts/build_cpp.sh --deps-only

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e ".[all]" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import res2net, torch; print('res2net', res2net.__version__, 'torch', torch.__version__)"

if [ "${1:-}" != "--no-ref" ]; then
  if [ ! -x .venv-ref/bin/python ] || ! .venv-ref/bin/python -c "import paddle, paddleclas" 2>/dev/null; then
    "$PY" -m venv .venv-ref
    .venv-ref/bin/python -m pip install -q "paddlepaddle==3.3.1" "paddleclas==2.6.0" 2>&1 \
      | grep -v '^WARNING: Location' || true
  fi
  .venv-ref/bin/python -c "import paddle; print('reference: paddlepaddle', paddle.__version__)" 2>/dev/null
fi
