#!/usr/bin/env bash
# Set up and run the main job on the embedded default: render scikit-learn's handwritten
# digits, train a Res2Net on them (configs/digits_demo.yaml), evaluate on the held-out
# split, and classify a few held-out images with the trained weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-ref
.venv/bin/res2net models --family paddleclas
.venv/bin/res2net digits data/digits
.venv/bin/res2net train --config configs/digits_demo.yaml
.venv/bin/res2net eval --weights runs/digits_demo/final.safetensors --data data/digits/val
# One held-out image of each of four classes; the export carries arch, preprocessing, labels.
samples=()
for digit in 0 3 5 8; do
  samples+=("$(find "data/digits/val/$digit" -name '*.png' | sort | head -n 1)")
done
.venv/bin/res2net predict "${samples[@]}" --weights runs/digits_demo/final.safetensors --topk 3
