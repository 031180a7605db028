#!/usr/bin/env bash
# docs/results.md: short runs of four tasks at 64x64 on this machine, each evaluated with
# --mode=eval; contact sheets land in docs/results/, metrics in WORK_DIR/metrics.md.
#   scripts/results.sh [WORK_DIR] [STEPS] [TASKS...]
#   (defaults: /tmp/p2p_results, 2500 steps, all four tasks; ~4 minutes a task on 2 CPU cores)
# Photos for the derived tasks come from scikit-image (p2p_jax.data.sample_photos).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/p2p_results}
steps=${2:-2500}
shift 2 || shift $#
tasks=("${@:-labels_to_photo colorization super_resolution style_transfer}")
py=.venv/bin/python
mkdir -p "$work" docs/results
[ -d "$work/photos/train" ] || $py -m p2p_jax.data.sample_photos --output="$work/photos"

common=(--config=configs/default.py --config.num_train_steps="$steps"
        --config.eval_every_steps=500 --config.sample_every_steps=500
        --config.checkpoint_every_steps="$steps")
photos=(--config.dataset.source=images --config.dataset.path="$work/photos"
        --config.dataset.load_size=96 --config.dataset.preprocess=crop)
declare -A task_flags=(
  [labels_to_photo]="--config.dataset.num_eval=8"
  [colorization]="${photos[*]} --config.dataset.task=colorization"
  [super_resolution]="${photos[*]} --config.dataset.task=super_resolution"
  [style_transfer]="${photos[*]} --config.dataset.task=stylize --config.dataset.direction=BtoA"
)
for task in ${tasks[@]}; do
  # shellcheck disable=SC2086  # task_flags holds several flags.
  $py -m p2p_jax.main "${common[@]}" ${task_flags[$task]} --workdir="$work/$task" \
    --alsologtostderr=false 2>"$work/$task.train.log"
  # Trained at batch 8, so tested with the running batch statistics (model.eval_mode), not
  # with each image's own (the reference's default, consistent with training at batch 1).
  $py -m p2p_jax.main "${common[@]}" ${task_flags[$task]} --workdir="$work/$task" \
    --mode=eval --config.model.eval_mode=True --alsologtostderr=false 2>"$work/$task.eval.log"
  report=$(ls -d "$work/$task"/eval/val_* | tail -1)
  cp "$report/contact_sheet.png" "docs/results/$task.png"
  # Metrics of the output, and of the input itself as a baseline (gray shown as RGB).
  $py - "$task" "$report" <<'PY' >> "$work/metrics.md"
import glob, json, sys
import jax.numpy as jnp, numpy as np
from p2p_jax.eval import metrics
from p2p_jax.data import images
task, report = sys.argv[1], sys.argv[2]
m = json.load(open(f"{report}/metrics.json"))
inputs = [images.to_channels(images.read(p), 3) for p in sorted(glob.glob(f"{report}/images/*_input.png"))]
targets = [images.to_channels(images.read(p), 3) for p in sorted(glob.glob(f"{report}/images/*_target.png"))]
base = {k: float(np.mean([metrics.image_metrics(jnp.asarray(a[None] / 127.5 - 1), jnp.asarray(b[None] / 127.5 - 1))[k]
                          for a, b in zip(inputs, targets)])) for k in ("l1", "psnr", "ssim")}
fmt = lambda d: " | ".join(f"{d[k]:.3f}" for k in ("l1", "psnr", "ssim"))
print(f"| {task} | {m['num_examples']} | {fmt(m['metrics'])} | {fmt(base)} |")
PY
done
cat "$work/metrics.md"
