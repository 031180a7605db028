#!/usr/bin/env bash
# Our train step beside the PyTorch reference iteration, in one session, on this machine.
# Usage: benchmarks/compare_reference.sh [TORCH_VENV] [BATCH_SIZES...]
#   TORCH_VENV: a virtualenv with torch (python3 -m venv V && V/bin/pip install torch==2.13.0);
#   the reference script is ../shared/bench/torch_reference.py.
# Prints the JSON lines of both and the images/s ratio per batch size.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_venv=${1:-/tmp/torchvenv}
shift || true
sizes=("${@:-1 4}")
for b in ${sizes[@]}; do
  ours=$(.venv/bin/python -m p2p_jax.benchmark train --config=configs/facades.py \
    --config.batch_size="$b" --steps=8 2>/dev/null | grep '^{')
  ref=$("$torch_venv/bin/python" ../shared/bench/torch_reference.py --batch_size "$b" \
    --steps 8 2>/dev/null | grep '^{')
  echo "$ours"
  echo "$ref"
  python3 -c "import json,sys; o=json.loads(sys.argv[1]); r=json.loads(sys.argv[2]); \
print(json.dumps({'batch_size': $b, 'ours_images_per_sec': round(o['images_per_sec'], 3), \
'reference_images_per_sec': round(r['images_per_sec'], 3), \
'ratio': round(o['images_per_sec'] / r['images_per_sec'], 3)}))" "$ours" "$ref"
done
