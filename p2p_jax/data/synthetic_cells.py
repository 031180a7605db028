"""An embedded scientific dataset: 16-bit, two-channel fluorescence-like images of cells.

Channel 0 holds nuclei (bright, compact ellipses with chromatin texture), channel 1 the
cytoplasm around them (larger, dimmer, with fibres); a camera offset, and values spread over
most of the 16-bit range. With `dataset.task=fluorescence` these are the clean targets of a
noisy, blurred one-channel view, so the lossless path (16-bit in, 2 channels out, percentile
mapping, 16-bit writes) is exercised end to end with nothing to download. Example `i` of a
split is a pure function of (seed, split, i), like `synthetic.SyntheticScenes`.
"""

from __future__ import annotations

import cv2
import numpy as np

from p2p_jax.data.synthetic import RenderedSource

OFFSET = 400.0  # A camera's dark level, in counts.


def _blob(height: int, width: int, centre, axes, angle: float) -> np.ndarray:
    """A soft-edged filled ellipse in [0, 1]."""
    mask = np.zeros((height, width), np.float32)
    cv2.ellipse(mask, (int(centre[1]), int(centre[0])), (int(axes[1]), int(axes[0])), angle,
                0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), 1.0)


def _texture(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), sigma)
    return (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)


def render_cells(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 2) uint16: nuclei, cytoplasm."""
    nuclei = np.zeros((size, size), np.float32)
    cytoplasm = np.zeros((size, size), np.float32)
    count = int(rng.integers(3, 3 + max(size // 24, 2)))
    for _ in range(count):
        centre = rng.uniform(0.1 * size, 0.9 * size, 2)
        radius = rng.uniform(0.05, 0.09) * size
        angle = float(rng.uniform(0, 180))
        brightness = rng.uniform(0.5, 1.0)
        nuclei = np.maximum(nuclei, brightness * _blob(
            size, size, centre, (radius, radius * rng.uniform(0.6, 1.0)), angle))
        cytoplasm = np.maximum(cytoplasm, rng.uniform(0.3, 0.6) * _blob(
            size, size, centre, (2.2 * radius, 2.2 * radius * rng.uniform(0.6, 1.0)),
            angle + float(rng.uniform(-30, 30))))
    nuclei *= 0.7 + 0.3 * _texture(rng, size, size, 1.5)
    fibres = _texture(rng, size, size, 0.8)
    cytoplasm *= 0.6 + 0.4 * fibres ** 2
    channels = np.stack([nuclei * 52000.0, cytoplasm * 30000.0], axis=-1) + OFFSET
    return np.clip(np.round(channels), 0, 65535).astype(np.uint16)


class SyntheticCells(RenderedSource):
    """{'B': (size, size, 2) uint16} cell images."""

    kind, item, salt = "synthetic_cells", "cells", (7,)

    def render(self, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
        return {"B": render_cells(rng, size)}
