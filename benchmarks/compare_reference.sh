#!/usr/bin/env bash
# Our train step and generator inference beside the PyTorch reference, in one session.
# Usage: [ROUNDS=R] benchmarks/compare_reference.sh [TORCH_VENV] [BATCH_SIZES...]
#   TORCH_VENV: a virtualenv with torch (python3 -m venv V && V/bin/pip install torch==2.13.0);
#   the reference is ../shared/bench/torch_reference.py (training) and
#   benchmarks/torch_inference.py (its generator under no_grad, batch 16).
# Ours restarts itself onto huge-page malloc on CPU (P2P_JAX_HUGEPAGE_MALLOC); the reference is run
# both as users run it and with the same GLIBC_TUNABLES, and the ratio is given against both.
# ROUNDS (default 1) alternates the three programs R times and compares medians: a shared
# machine moves single runs by 5-10%.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_venv=${1:-/tmp/torchvenv}
shift || true
sizes=("${@:-1 4}")
rounds=${ROUNDS:-1}
tunable=GLIBC_TUNABLES=glibc.malloc.hugetlb=1
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT

compare() {  # KIND BATCH: medians (and ranges) of the runs recorded for it
  python3 - "$1" "$2" "$runs" <<'PY'
import json, statistics, sys
kind, batch, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rates = {name: [json.loads(line)["images_per_sec"] for line in open(f"{runs}/{name}")]
         for name in ("ours", "ref", "tuned")}
median = {name: statistics.median(values) for name, values in rates.items()}
print(json.dumps({"benchmark": kind, "batch_size": batch, "rounds": len(rates["ours"]),
  "ours_images_per_sec": round(median["ours"], 3),
  "reference_images_per_sec": round(median["ref"], 3),
  "reference_hugepage_images_per_sec": round(median["tuned"], 3),
  "ranges": {name: [round(min(v), 3), round(max(v), 3)] for name, v in rates.items()},
  "ratio": round(median["ours"] / median["ref"], 3),
  "ratio_vs_hugepage_reference": round(median["ours"] / median["tuned"], 3)}))
PY
}

record() {  # NAME COMMAND...: runs it, keeps and prints its JSON line
  local line
  line=$("${@:2}" 2>/dev/null | grep '^{')
  echo "$line" | tee -a "$runs/$1"
}

for b in ${sizes[@]}; do
  rm -f "$runs"/*
  for _ in $(seq "$rounds"); do
    record ours .venv/bin/python -m p2p_jax.benchmark train --config=configs/facades.py \
      --config.batch_size="$b" --steps=8
    record ref "$torch_venv/bin/python" ../shared/bench/torch_reference.py --batch_size "$b" \
      --steps 8
    record tuned env "$tunable" "$torch_venv/bin/python" ../shared/bench/torch_reference.py \
      --batch_size "$b" --steps 8
  done
  compare train "$b"
done

rm -f "$runs"/*
for _ in $(seq "$rounds"); do
  record ours .venv/bin/python -m p2p_jax.benchmark predict --config=configs/facades.py \
    --config.batch_size=16 --steps=3
  record ref "$torch_venv/bin/python" benchmarks/torch_inference.py --batch_size 16
  record tuned env "$tunable" "$torch_venv/bin/python" benchmarks/torch_inference.py \
    --batch_size 16
done
compare predict 16
