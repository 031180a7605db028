"""Derived tasks: paired training data made from plain photos (B), the input A computed.

Each task is a function (photo uint8 HWC, rng, config) -> input uint8 HWC, applied after the
crop and flip, so it sees exactly the pixels the generator will be asked to reproduce.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import ml_collections
import numpy as np

from p2p_jax.data import images


def _rgb(photo: np.ndarray) -> np.ndarray:
    return images.to_channels(photo, 3)


def colorization(photo, rng, dataset) -> np.ndarray:
    """Grayscale (ITU-R 601 luma) or CIE Lab lightness L, as one channel."""
    del rng
    if dataset.color_space == "lab":
        return cv2.cvtColor(_rgb(photo), cv2.COLOR_RGB2LAB)[:, :, :1]  # L scaled to 0..255.
    return images.to_channels(photo, 1)


def super_resolution(photo, rng, dataset) -> np.ndarray:
    """Downsampled by `sr_factor` with `sr_kernel`, then bicubic back to the photo's size."""
    del rng
    h, w = photo.shape[:2]
    factor = dataset.sr_factor
    small_h, small_w = max(h // factor, 1), max(w // factor, 1)
    if dataset.sr_kernel == "gaussian":  # Blur (sigma 0.5 * factor), then decimate.
        blurred = cv2.GaussianBlur(photo, (0, 0), 0.5 * factor)
        blurred = blurred[:, :, None] if blurred.ndim == 2 else blurred
        small = images.resize(blurred, small_h, small_w, shrink="nearest")
    else:
        small = images.resize(photo, small_h, small_w, shrink=dataset.sr_kernel)
    return images.resize(small, h, w)


def edges(photo, rng, dataset) -> np.ndarray:
    """Canny edges as black lines on white, like the pix2pix edges2* datasets."""
    del rng
    gray = images.to_channels(photo, 1)[:, :, 0]
    found = cv2.Canny(gray, dataset.canny_low, dataset.canny_high)
    return (255 - found)[:, :, None]


def stylize(photo, rng, dataset) -> np.ndarray:
    """A classical non-photorealistic rendering (OpenCV's edge-preserving filters)."""
    del rng
    bgr = cv2.cvtColor(_rgb(photo), cv2.COLOR_RGB2BGR)
    if dataset.style == "stylization":
        out = cv2.stylization(bgr, sigma_s=60, sigma_r=0.45)
    elif dataset.style == "detail_enhance":
        out = cv2.detailEnhance(bgr, sigma_s=10, sigma_r=0.15)
    else:
        gray, color = cv2.pencilSketch(bgr, sigma_s=60, sigma_r=0.07, shade_factor=0.05)
        if dataset.style == "pencil_sketch":
            return gray[:, :, None]
        out = color
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def denoise(photo, rng, dataset) -> np.ndarray:
    """Additive Gaussian noise of `noise_std` (on the 0..255 scale), fresh every draw."""
    noise = rng.normal(0.0, dataset.noise_std, photo.shape)
    return np.clip(photo + noise, 0, 255).round().astype(np.uint8)


DERIVE: dict[str, Callable[[np.ndarray, np.random.Generator, ml_collections.ConfigDict],
                           np.ndarray]] = {
    "colorization": colorization, "super_resolution": super_resolution, "edges": edges,
    "stylize": stylize, "denoise": denoise}


def apply(example: dict[str, np.ndarray], rng: np.random.Generator,
          dataset: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """Derived tasks: A computed from the photo B (`direction=BtoA`: the photo is the input and
    the derived image the target, e.g. photo -> stylized). `paired` passes the example through."""
    if dataset.task == "paired":
        return example
    photo = example["B"]
    derived = DERIVE[dataset.task](photo, rng, dataset.derived)
    if dataset.direction == "BtoA":
        return {"A": photo, "B": derived}
    return {"A": derived, "B": photo}
