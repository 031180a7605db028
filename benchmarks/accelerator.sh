#!/usr/bin/env bash
# Our train step and generator inference on an accelerator, over batch sizes and compute
# dtypes, and the PyTorch reference on the same GPU when torch sees CUDA.
# Usage: benchmarks/accelerator.sh [PYTHON] [BATCH_SIZES...]   (defaults: python3, 1 16 64)
#   DTYPES: our compute dtypes (default "float32 bfloat16"; empty: none); TORCH=0: no reference;
#   REFERENCE_DIR: folder holding torch_reference.py (default ../shared/bench).
# One JSON line per run; a run that fails prints its last error line instead.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}
shift || true
sizes=("${@:-1 16 64}")
ours=(--config=configs/facades.py --steps=20 --warmup=3)

run() {  # Prints the JSON line, or the error that ended the run.
  local out
  out=$("$@" 2>&1) && grep '^{' <<<"$out" || echo "FAILED ($*): $(tail -n 1 <<<"$out")"
}

for dtype in ${DTYPES-float32 bfloat16}; do
  for b in ${sizes[@]}; do
    run "$py" -m p2p_jax.benchmark train "${ours[@]}" --config.dtype=$dtype --config.batch_size=$b
  done
  run "$py" -m p2p_jax.benchmark predict "${ours[@]}" --config.dtype=$dtype --config.batch_size=16
done

has_cuda_torch() { "$py" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; }
if [[ ${TORCH:-1} != 0 ]] && has_cuda_torch 2>/dev/null; then
  for b in ${sizes[@]}; do
    for amp in "" --amp; do
      run "$py" benchmarks/torch_reference_cuda.py --batch_size "$b" $amp \
        --reference_dir "${REFERENCE_DIR:-../shared/bench}"
    done
  done
fi
