#!/usr/bin/env bash
# Set up and run the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-ref
.venv/bin/res2net models
