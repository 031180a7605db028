#!/usr/bin/env bash
# Our train step and generator inference beside the PyTorch reference, in one session.
# Usage: benchmarks/compare_reference.sh [TORCH_VENV] [BATCH_SIZES...]
#   TORCH_VENV: a virtualenv with torch (python3 -m venv V && V/bin/pip install torch==2.13.0);
#   the reference is ../shared/bench/torch_reference.py (training) and
#   benchmarks/torch_inference.py (its generator under no_grad, batch 16).
# Ours restarts itself onto huge-page malloc (config.hugepage_malloc); the reference is run
# both as users run it and with the same GLIBC_TUNABLES, and the ratio is given against both.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_venv=${1:-/tmp/torchvenv}
shift || true
sizes=("${@:-1 4}")
tunable=GLIBC_TUNABLES=glibc.malloc.hugetlb=1

compare() {  # KIND BATCH OURS_JSON REF_JSON REF_TUNED_JSON
  python3 -c "import json,sys
o, r, t = (json.loads(a) for a in sys.argv[3:])
print(json.dumps({'benchmark': sys.argv[1], 'batch_size': int(sys.argv[2]),
  'ours_images_per_sec': round(o['images_per_sec'], 3),
  'reference_images_per_sec': round(r['images_per_sec'], 3),
  'reference_hugepage_images_per_sec': round(t['images_per_sec'], 3),
  'ratio': round(o['images_per_sec'] / r['images_per_sec'], 3),
  'ratio_vs_hugepage_reference': round(o['images_per_sec'] / t['images_per_sec'], 3)}))" "$@"
}

for b in ${sizes[@]}; do
  ours=$(.venv/bin/python -m p2p_jax.benchmark train --config=configs/facades.py \
    --config.batch_size="$b" --steps=8 2>/dev/null | grep '^{')
  ref=$("$torch_venv/bin/python" ../shared/bench/torch_reference.py --batch_size "$b" \
    --steps 8 2>/dev/null | grep '^{')
  tuned=$(env "$tunable" "$torch_venv/bin/python" ../shared/bench/torch_reference.py \
    --batch_size "$b" --steps 8 2>/dev/null | grep '^{')
  printf '%s\n%s\n%s\n' "$ours" "$ref" "$tuned"
  compare train "$b" "$ours" "$ref" "$tuned"
done

ours=$(.venv/bin/python -m p2p_jax.benchmark predict --config=configs/facades.py \
  --config.batch_size=16 --steps=3 2>/dev/null | grep '^{')
ref=$("$torch_venv/bin/python" benchmarks/torch_inference.py --batch_size 16 | grep '^{')
tuned=$(env "$tunable" "$torch_venv/bin/python" benchmarks/torch_inference.py --batch_size 16 \
  | grep '^{')
printf '%s\n%s\n%s\n' "$ours" "$ref" "$tuned"
compare predict 16 "$ours" "$ref" "$tuned"
