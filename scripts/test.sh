#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, reference checks included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check res2net tests benchmarks
exec .venv/bin/python -m pytest -q "$@"
