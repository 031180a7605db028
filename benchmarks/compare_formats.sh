#!/usr/bin/env bash
# The input pipeline on the same pixels stored three ways: 8-bit PNG, 16-bit TIFF (zlib, as
# predict writes it) and 16-bit TIFF uncompressed (as most microscopes write it).
# Usage: benchmarks/compare_formats.sh [DIR] [COUNT] [SIZE]
#   DIR (default /tmp/p2p_formats) gets png8/, tif16/ and tif16raw/, each a `paired` folder
#   (A/train, B/train) of COUNT (64) SIZE x SIZE (512) synthetic cell images: A one channel,
#   B three (nuclei, cytoplasm, their mean). Prints one JSON line per format
#   (`python -m p2p_jax.benchmark input`: decode, crop, flip, convert and batch, 256 px crops).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/p2p_formats}
count=${2:-64}
size=${3:-512}
.venv/bin/python - "$dir" "$count" "$size" <<'PY'
import os, sys
import numpy as np
import tifffile
from p2p_jax.data import images
from p2p_jax.data.synthetic_cells import render_cells

root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    cells = render_cells(np.random.default_rng(i), size).astype(np.uint32)
    b = np.concatenate([cells, cells.mean(-1, keepdims=True)], -1).astype(np.uint16)
    a = b.sum(-1, keepdims=True).clip(0, 65535).astype(np.uint16)
    for name, (ext, side_a, side_b) in {
            "png8": (".png", (a >> 8).astype(np.uint8), (b >> 8).astype(np.uint8)),
            "tif16": (".tif", a, b), "tif16raw": (".tif", a, b)}.items():
        for side, image in (("A", side_a), ("B", side_b)):
            path = os.path.join(root, name, side, "train", f"{i:04d}{ext}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if name == "tif16raw":
                if image.shape[2] == 1:
                    tifffile.imwrite(path, image[..., 0], photometric="minisblack")
                else:
                    tifffile.imwrite(path, image, photometric="minisblack",
                                     planarconfig="contig")
            else:
                images.write(path, image)
PY
for name in png8 tif16 tif16raw; do
  .venv/bin/python -m p2p_jax.benchmark input --config=configs/fluorescence.py \
    --config.dataset.source=paired --config.dataset.task=paired \
    --config.dataset.path="$dir/$name" --config.dataset.load_size=256 \
    --config.dataset.image_size=256 --config.dataset.preprocess=crop \
    --config.batch_size=4 --steps=100 --warmup=10 2>/dev/null | grep '^{' \
    | sed "s/^{/{\"format\": \"$name\", \"MB\": $(du -sm "$dir/$name" | cut -f1), /"
done
