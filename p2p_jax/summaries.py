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


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Grayscale is shown as RGB so that rows of mixed channel counts line up."""
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def _pad_width(row: np.ndarray, width: int) -> np.ndarray:
    return np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255)


def triptych_grid(inputs, outputs, targets, gap: int = 2) -> np.ndarray:
    """One row per example: input | output | target, uint8 RGB. Images may differ in size
    between rows (rows are padded white to the widest)."""
    rows = []
    for a, g, b in zip(inputs, outputs, targets, strict=True):
        sep = np.full((a.shape[0], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([as_rgb(a), sep, as_rgb(g), sep, as_rgb(b)], axis=1))
    width = max(r.shape[1] for r in rows)
    out = []
    for row in rows:
        out += [np.full((gap, width, 3), 255, np.uint8)] if out else []
        out.append(_pad_width(row, width))
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
