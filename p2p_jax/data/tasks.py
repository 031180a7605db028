"""Derived tasks: paired training data made from plain photos (B), the input A computed.

Each task is a function (photo HWC, rng, config) -> input HWC, applied after the crop and
flip, so it sees exactly the pixels the generator will be asked to reproduce. The photo tasks
take 8-bit photos (a 16-bit or float photo is reduced to 8 bits for them); `fluorescence`
keeps its images' own type and channels.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import ml_collections
import numpy as np

from p2p_jax.data import images, values


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


def fluorescence(image, rng, dataset) -> np.ndarray:
    """A widefield-like view of clean multi-channel fluorescence (the target): the channels'
    sum blurred by a Gaussian PSF, with Poisson shot noise (`photons` per full-scale value)
    and Gaussian read noise, as one channel of the image's own dtype. Fresh noise every draw."""
    full_scale = values.DTYPE_RANGES[image.dtype.name][1]
    signal = image.astype(np.float32).sum(axis=2) / image.shape[2]
    if dataset.psf_sigma:
        signal = cv2.GaussianBlur(signal, (0, 0), dataset.psf_sigma)
    scale = dataset.photons / full_scale
    counts = rng.poisson(np.maximum(signal, 0) * scale).astype(np.float32) / scale
    noisy = counts + rng.normal(0.0, dataset.read_noise * full_scale, signal.shape)
    if image.dtype == np.float32:
        return noisy.astype(np.float32)[:, :, None]
    return np.clip(np.round(noisy), 0, full_scale).astype(image.dtype)[:, :, None]


DERIVE: dict[str, Callable[[np.ndarray, np.random.Generator, ml_collections.ConfigDict],
                           np.ndarray]] = {
    "colorization": colorization, "super_resolution": super_resolution, "edges": edges,
    "stylize": stylize, "denoise": denoise, "fluorescence": fluorescence}
# Tasks that take any pixel type and channel count; the others take 8-bit photos.
ANY_DATA = ("fluorescence",)


def apply(example: dict[str, np.ndarray], rng: np.random.Generator,
          dataset: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """Derived tasks: A computed from the photo B (`direction=BtoA`: the photo is the input and
    the derived image the target, e.g. photo -> stylized). `paired` passes the example through."""
    if dataset.task == "paired":
        return example
    photo = example["B"]
    if dataset.task not in ANY_DATA and photo.dtype != np.uint8:
        photo = images.convert(photo, "uint8", "a photo of a derived photo task")
    derived = DERIVE[dataset.task](photo, rng, dataset.derived)
    if dataset.direction == "BtoA":
        return {"A": photo, "B": derived}
    return {"A": derived, "B": photo}
