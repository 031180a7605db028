"""Reference preprocessing: identical resize / crop / flip of A and B, on uint8 arrays.

Values stay uint8 on the host (4x less to move than float32); the train step scales them to
[-1, 1] on the device.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize, the reference's default interpolation."""
    if image.shape[:2] == (height, width):
        return image
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[:, :, 0] if squeeze else image)
    out = np.asarray(pil.resize((width, height), Image.BICUBIC))
    return out[:, :, None] if squeeze else out


def crop_window(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a random size x size crop; a clear error if the image is smaller."""
    if height < size or width < size:
        raise ValueError(f"image of {height}x{width} is smaller than the crop "
                         f"dataset.image_size={size}; lower image_size or raise load_size")
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def preprocess_pair(pair: dict[str, np.ndarray], rng: np.random.Generator, mode: str,
                    load_size: int, crop_size: int, flip: bool) -> dict[str, np.ndarray]:
    """Applies the same random geometry to A and B, as the reference does."""
    a, b = pair["A"], pair["B"]
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"dataset.preprocess={mode!r} is not one of {PREPROCESS_MODES}")
    if mode == "resize_and_crop":
        a, b = resize(a, load_size, load_size), resize(b, load_size, load_size)
    elif mode.startswith("scale_width"):
        h, w = a.shape[:2]
        new_h = max(round(load_size * h / w), crop_size if mode.endswith("crop") else 1)
        a, b = resize(a, new_h, load_size), resize(b, new_h, load_size)
    if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
        top, left = crop_window(a.shape[0], a.shape[1], crop_size, rng)
        a = a[top:top + crop_size, left:left + crop_size]
        b = b[top:top + crop_size, left:left + crop_size]
    if flip and rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    return {"A": np.ascontiguousarray(a), "B": np.ascontiguousarray(b)}
