#!/usr/bin/env bash
# Our input pipeline beside the reference's PIL + DataLoader loading, same folder, same workers.
# Usage: benchmarks/compare_loader.sh TORCH_VENV ALIGNED_DIR [WORKERS]
#   ALIGNED_DIR holds train/ with A|B side-by-side images (e.g. 512x256 JPEGs); the reference
#   loader is ../shared/bench/torch_reference_loader.py (needs torch and pillow in TORCH_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
torch_venv=$1
dir=$2
workers=${3:-2}
for w in 0 "$workers"; do
  .venv/bin/python -m p2p_jax.benchmark input --config=configs/facades.py \
    --config.dataset.path="$dir" --config.batch_size=4 --config.dataset.worker_count="$w" \
    --steps=300 --warmup=30 2>/dev/null | grep '^{'
done
"$torch_venv/bin/python" ../shared/bench/torch_reference_loader.py "$dir/train" \
  --workers "$workers" | grep '^{'
