"""One row of the results table (scripts/results.sh): a task's output and its input baseline
against the targets of an eval report, as L1 / PSNR / SSIM; colour tasks also by chroma in
CIE Lab, where a colour cast shows: the mean per-pixel a/b error (dE_ab of chroma alone) and
the cast (the length of the mean a/b offset over an image), averaged over images; and on how
many images the output's PSNR beats the input's (the spread behind the means).

  python -m benchmarks.results_metrics TASK W/eval/val_STEP     a table row
  python -m benchmarks.results_metrics --header                 the table's header
"""

from __future__ import annotations

import glob
import json
import os
import sys

import cv2
import jax.numpy as jnp
import numpy as np

from p2p_jax.data import images
from p2p_jax.eval import metrics

HEADER = ("| task | images | L1 | PSNR (dB) | SSIM | chroma dE_ab | cast | "
          "baseline: L1 | PSNR | SSIM | chroma dE_ab | cast | PSNR beats baseline |\n"
          + "| --- " * 13 + "|")


def chroma_errors(image: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(mean per-pixel a/b distance, length of the mean a/b offset) in CIE Lab units."""
    def ab(rgb):
        return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 1:]

    offset = ab(image) - ab(target)
    return (float(np.sqrt((offset ** 2).sum(-1)).mean()),
            float(np.linalg.norm(offset.reshape(-1, 2).mean(0))))


def scores(pictures: list[np.ndarray], targets: list[np.ndarray]) -> list[dict[str, float]]:
    """Per image: L1, PSNR, SSIM, chroma error and cast."""
    per_image = []
    for picture, target in zip(pictures, targets, strict=True):
        values = metrics.image_metrics(jnp.asarray(picture[None] / 127.5 - 1.0),
                                       jnp.asarray(target[None] / 127.5 - 1.0))
        row = {k: float(values[k][0]) for k in ("l1", "psnr", "ssim")}
        row["chroma"], row["cast"] = chroma_errors(picture, target)
        per_image.append(row)
    return per_image


def means(per_image: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in per_image])) for k in per_image[0]}


def row(task: str, report: str) -> str:
    def read(kind):
        return [images.to_channels(images.read(p), 3)
                for p in sorted(glob.glob(os.path.join(report, "images", f"*_{kind}.png")))]

    targets = read("target")
    output, baseline = scores(read("output"), targets), scores(read("input"), targets)
    wins = sum(o["psnr"] > b["psnr"] for o, b in zip(output, baseline, strict=True))
    with open(os.path.join(report, "metrics.json")) as f:
        count = json.load(f)["num_examples"]

    def cells(s):
        return (f"{s['l1']:.4f} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['chroma']:.2f} | "
                f"{s['cast']:.2f}")

    return (f"| {task} | {count} | {cells(means(output))} | {cells(means(baseline))} | "
            f"{wins}/{len(output)} |")


def main(argv: list[str]) -> None:
    if argv[1:] == ["--header"]:
        print(HEADER)
    elif len(argv) == 3:
        print(row(argv[1], argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
