"""Overlapping tiles for translating images too large to run the generator on whole.

The generator's activations take tens of times the memory of its input image (a 100 Mpx
photo through unet_256 would need tens of GB), so predict and serve run such images in
square tiles and blend the overlaps with linear ramps. Output rows are finished one tile row
at a time, so the host holds the image, its output and one strip of float sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def tile_side(max_pixels: int, multiple: int) -> int:
    """The largest square tile of at most `max_pixels` whose side is a multiple of `multiple`."""
    return max(math.isqrt(max_pixels) // multiple, 1) * multiple


def starts(size: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles of `tile` covering [0, size), neighbours sharing at least `overlap`."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def ramp(length: int, overlap: int) -> np.ndarray:
    """Blend weights along one side of a tile: rising over `overlap` pixels at both ends."""
    position = np.arange(length, dtype=np.float32)
    return np.minimum(1.0, np.minimum(position + 1, length - position) / (overlap + 1))


def translate_tiled(image: np.ndarray, tile: int, overlap: int,
                    translate: Callable[[list[np.ndarray], int], list[np.ndarray]]
                    ) -> np.ndarray:
    """`translate(tiles, first)` (tiles numbered from `first` -> their outputs, of any dtype)
    applied to the whole `image` (H, W, C) through overlapping tiles, a row at a time;
    returns the (H, W, C_out) output."""
    height, width = image.shape[:2]
    overlap = min(overlap, tile // 2)
    rows, columns = starts(height, tile, overlap), starts(width, tile, overlap)
    output = None
    strip = weights = None  # Float sums for image rows [strip_top, strip_top + len(strip)).
    strip_top = 0
    for index, top in enumerate(rows):
        tiles = [image[top:top + tile, left:left + tile] for left in columns]
        outputs = translate(tiles, index * len(columns))
        tile_height = tiles[0].shape[0]
        if output is None:
            output = np.zeros((height, width, outputs[0].shape[2]), outputs[0].dtype)
            strip = np.zeros((tile_height, width, outputs[0].shape[2]), np.float32)
            weights = np.zeros((tile_height, width, 1), np.float32)
        row_weight = ramp(tile_height, overlap if len(rows) > 1 else 0)
        for left, out in zip(columns, outputs, strict=True):
            weight = (row_weight[:, None] * ramp(out.shape[1], overlap if len(columns) > 1
                                                   else 0)[None, :])[:, :, None]
            offset = top - strip_top
            strip[offset:offset + tile_height, left:left + out.shape[1]] += weight * out
            weights[offset:offset + tile_height, left:left + out.shape[1]] += weight
        done = (rows[index + 1] if index + 1 < len(rows) else height) - strip_top
        blended = strip[:done] / np.maximum(weights[:done], 1e-12)
        if np.issubdtype(output.dtype, np.integer):  # Between tiles' values: no clipping.
            blended = np.round(blended)
        output[strip_top:strip_top + done] = blended
        strip = np.concatenate([strip[done:], np.zeros_like(strip[:done])])
        weights = np.concatenate([weights[done:], np.zeros_like(weights[:done])])
        strip_top += done
    return output

