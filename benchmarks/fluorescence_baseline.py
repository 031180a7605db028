"""The fluorescence task's model against its input baselines, in the data's range.

The input is one noisy, blurred channel and the target two clean ones, so "the input itself"
is a baseline only once it is put in the target's terms. Two are scored here, on the same
eval examples and with the same value mapping and metrics as `--mode=eval`:

  input x C     the input in every output channel, mapped by the target's range
  linear fit    per output channel, the least-squares gain and offset from the input's
                values to the target's over a training sample: the best any per-pixel
                (non-spatial) unmixing of this input can do

  python -m benchmarks.fluorescence_baseline WORKDIR     a Markdown table (after --mode=eval)
"""

from __future__ import annotations

import glob
import json
import os
import sys

import jax.numpy as jnp
import numpy as np

from p2p_jax.config.saved import saved_config
from p2p_jax.data import pipeline, values
from p2p_jax.eval import metrics
from p2p_jax.models import generation


def _scores(outputs: list[np.ndarray], targets: list[np.ndarray], value_map) -> dict:
    per = [metrics.image_metrics(generation.to_float(jnp.asarray(o[None]), value_map),
                                 generation.to_float(jnp.asarray(t[None]), value_map))
           for o, t in zip(outputs, targets, strict=True)]
    return {k: [float(p[k][0]) for p in per] for k in ("l1", "psnr", "ssim")}


def _fit(config) -> np.ndarray:
    """(C, 2) per-channel gain and offset, input -> target, over a training sample."""
    sample = pipeline._sampled(config, None, 64)
    a = np.concatenate([x.reshape(-1).astype(np.float64) for x in sample["A"]])
    design = np.stack([a, np.ones_like(a)], 1)
    fits = []
    for c in range(config.dataset.output_channels):
        b = np.concatenate([x[..., c].reshape(-1).astype(np.float64) for x in sample["B"]])
        fits.append(np.linalg.lstsq(design, b, rcond=None)[0])
    return np.array(fits)


def main(workdir: str) -> None:
    config = saved_config(workdir)
    examples = pipeline.eval_examples(config)
    out_map = values.side_map(config.dataset, "output")
    targets = [e["B"] for e in examples]
    top = values.DTYPE_RANGES[out_map.dtype][1]

    def as_target(x):
        x = np.clip(np.round(x), 0, top) if out_map.integer else x
        return x.astype(out_map.dtype)

    channels = config.dataset.output_channels
    repeated = [as_target(np.repeat(e["A"].astype(np.float64), channels, -1)) for e in examples]
    fit = _fit(config)
    fitted = [as_target(e["A"].astype(np.float64) * fit[:, 0] + fit[:, 1]) for e in examples]
    report = sorted(glob.glob(os.path.join(workdir, "eval", "val_*", "metrics.json")))[-1]
    with open(report) as f:
        model = json.load(f)["per_image"]
    rows = [("model", model), ("input x C", _scores(repeated, targets, out_map)),
            ("linear fit", _scores(fitted, targets, out_map))]
    print(f"{len(examples)} eval images, {report}; PSNR peak and SSIM constants: the targets' "
          f"range {out_map.low}..{out_map.high} ({out_map.dtype})")
    print("| | L1 | PSNR (dB) | SSIM | model's PSNR beats it |\n| --- | --- | --- | --- | --- |")
    for name, scores in rows:
        beats = sum(m > s for m, s in zip(model["psnr"], scores["psnr"], strict=True))
        print(f"| {name} | {np.mean(scores['l1']):.4f} | {np.mean(scores['psnr']):.2f} | "
              f"{np.mean(scores['ssim']):.3f} | "
              f"{'' if name == 'model' else f'{beats}/{len(examples)}'} |")


if __name__ == "__main__":
    main(sys.argv[1])
