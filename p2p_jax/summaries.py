"""Image grids of (input | generated | target) for TensorBoard and for PNG files."""

from __future__ import annotations

import io

import numpy as np
from etils import epath
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(
        np.uint8)


def as_rgb(images: np.ndarray) -> np.ndarray:
    """Grayscale batches are shown as RGB so that rows of mixed channel counts line up."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images[..., :3]


def triptych_grid(inputs: np.ndarray, outputs: np.ndarray, targets: np.ndarray,
                  gap: int = 2) -> np.ndarray:
    """One row per example: input | output | target, uint8 (N*H + gaps, 3*W + gaps, 3)."""
    rows = []
    for a, g, b in zip(as_rgb(inputs), as_rgb(outputs), as_rgb(targets), strict=True):
        sep = np.full((a.shape[0], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([a, sep, g, sep, b], axis=1))
    hsep = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    out = [rows[0]]
    for row in rows[1:]:
        out += [hsep, row]
    return np.concatenate(out, axis=0)


def save_png(image: np.ndarray, path: str | epath.Path) -> None:
    """Writes atomically (temp file + rename), so a reader never sees half a PNG; local paths
    and gs:// alike."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
