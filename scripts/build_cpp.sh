#!/usr/bin/env bash
# Build the C++ predictor (cpp/) into build/cpp/res2net-cpp, on a fresh machine too:
#   - Debian packages: a C++17 compiler, CMake, OpenCV (decoding + preprocessing),
#     nlohmann-json (metadata), OpenSSL (SHA-256 of the model files); installed when missing
#     and we are root, else named;
#   - OpenVINO's C++ runtime and CMake config from the `openvino` Python wheel in .venv
#     (scripts/setup.sh installs it), so nothing else is downloaded.
# Usage: bash scripts/build_cpp.sh [extra cmake -D options]   (BUILD_TYPE=Debug for a debug build)
#        bash scripts/build_cpp.sh --deps-only                 (only the Debian packages; setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${RES2NET_PYTHON:-.venv/bin/python}
PACKAGES=(g++ cmake make pkg-config libopencv-dev nlohmann-json3-dev libssl-dev)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "build_cpp: installing ${missing[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif ! command -v dpkg-query >/dev/null; then
    echo "build_cpp: not Debian: make sure a C++17 compiler, CMake, OpenCV, nlohmann-json and OpenSSL are installed" >&2
  else
    echo "build_cpp: missing ${missing[*]}; install them (sudo apt-get install ${missing[*]})" >&2
    [ "${1:-}" = "--deps-only" ] || exit 1
  fi
fi
if [ "${1:-}" = "--deps-only" ]; then
  exit 0
fi

if ! OV_PKG=$("$PY" -c "import openvino, os; print(os.path.dirname(openvino.__file__))" 2>/dev/null); then
  echo "build_cpp: the openvino Python package is missing from $PY; run bash scripts/setup.sh" >&2
  exit 1
fi
if [ ! -f "$OV_PKG/cmake/OpenVINOConfig.cmake" ]; then
  echo "build_cpp: $OV_PKG has no cmake/OpenVINOConfig.cmake (an openvino wheel >= 2024 ships it)" >&2
  exit 1
fi

JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S cpp -B build/cpp -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
  -DOpenVINO_DIR="$OV_PKG/cmake" "$@" >/dev/null
cmake --build build/cpp -j "$JOBS"
build/cpp/res2net-cpp --version
