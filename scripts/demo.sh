#!/usr/bin/env bash
# Set up and run the main job on the embedded default: render scikit-learn's handwritten
# digits, train a Res2Net on them (configs/digits_demo.yaml), evaluate on the held-out split.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-ref
.venv/bin/res2net models
.venv/bin/res2net digits data/digits
.venv/bin/res2net train --config configs/digits_demo.yaml
.venv/bin/res2net eval --weights runs/digits_demo/final.safetensors --data data/digits/val
echo "curves: runs/digits_demo/curves.png  metrics: runs/digits_demo/metrics.csv"
