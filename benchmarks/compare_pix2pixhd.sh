#!/usr/bin/env bash
# Our pix2pixHD train step beside benchmarks/torch_pix2pixhd.py, alternated in one session.
# Usage: [ROUNDS=R] [HEIGHT=256 WIDTH=512 STEPS=4] benchmarks/compare_pix2pixhd.sh [TORCH_VENV]
#   TORCH_VENV: a virtualenv with torch (python3 -m venv V && V/bin/pip install torch==2.13.0).
# Both run the global generator, two D scales, LSGAN + feature matching + VGG at lambda 10, batch 1,
# with the same random VGG19 weights (written here with torch in torchvision's key layout), so no
# download is needed. Medians of R rounds (default 2): a shared machine moves single runs by 5-10%.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_venv=${1:-/tmp/torchvenv}
rounds=${ROUNDS:-2}
height=${HEIGHT:-256}
width=${WIDTH:-512}
steps=${STEPS:-4}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT

"$torch_venv/bin/python" - "$runs/vgg19.pth" <<'PY'
import sys, torch
cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
       512, 512, 512, 512, "M"]
state, index, channels = {}, 0, 3
for v in cfg:
    if v == "M":
        index += 1
        continue
    state[f"features.{index}.weight"] = torch.randn(v, channels, 3, 3) * (2 / (9 * channels)) ** 0.5
    state[f"features.{index}.bias"] = torch.zeros(v)
    index, channels = index + 2, v
torch.save(state, sys.argv[1])
PY

record() {  # NAME COMMAND...: runs it, keeps and prints its JSON line
  local line
  line=$("${@:2}" 2>/dev/null | grep '^{')
  echo "$line" | tee -a "$runs/$1"
}

for _ in $(seq "$rounds"); do
  record ours .venv/bin/python -m p2p_jax.benchmark train --config=configs/cityscapes_hd.py \
    --config.dataset.image_size="($height, $width)" --config.loss.vgg_weights="$runs/vgg19.pth" \
    --steps="$steps" --warmup=1
  record torch "$torch_venv/bin/python" benchmarks/torch_pix2pixhd.py --height "$height" \
    --width "$width" --steps "$steps"
done

python3 - "$runs" <<'PY'
import json, statistics, sys
rates = {name: [json.loads(line)["images_per_sec"] for line in open(f"{sys.argv[1]}/{name}")]
         for name in ("ours", "torch")}
median = {name: statistics.median(v) for name, v in rates.items()}
print(json.dumps({"benchmark": "pix2pixhd_train", "rounds": len(rates["ours"]),
  "ours_images_per_sec": round(median["ours"], 4),
  "torch_images_per_sec": round(median["torch"], 4),
  "ranges": {name: [round(min(v), 4), round(max(v), 4)] for name, v in rates.items()},
  "ratio": round(median["ours"] / median["torch"], 3)}))
PY
