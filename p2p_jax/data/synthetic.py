"""The embedded default dataset: procedurally generated street scenes, labels -> photo.

It mirrors the pix2pix labels->photo task (Cityscapes) with nothing to download: A is a
semantic label map in the Cityscapes palette, B a rendered "photo" of the same layout (sky
gradient, textured ground, a road in perspective with lane marks, buildings with window grids,
trees). Example `i` of a split is a pure function of (seed, split, i), so the source is
random-access, deterministic and shardable like any file-backed Grain source.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from p2p_jax.data import cityscapes

SKY, TERRAIN, ROAD, BUILDING, VEGETATION = range(5)
# Cityscapes colours of the classes used here.
PALETTE = cityscapes.LABEL_COLOURS[[cityscapes.SKY, cityscapes.TERRAIN, cityscapes.ROAD,
                                    cityscapes.BUILDING, cityscapes.VEGETATION]]
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise in [0, 1]: cheap, natural-looking texture."""
    coarse = rng.random((max(h // cell, 1) + 1, max(w // cell, 1) + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BILINEAR))


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (label map as RGB uint8, rendered photo as RGB uint8), both (size, size, 3)."""
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    labels = np.full((h, w), TERRAIN, np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.55))
    labels[:horizon] = SKY

    photo = np.zeros((h, w, 3), np.float32)
    t = yy[:, :, None] / max(horizon, 1)
    photo[:] = (1 - t) * np.array([90, 140, 220]) + t * np.array([200, 220, 240])
    grass = _smooth_noise(rng, h, w, max(size // 16, 2))[:, :, None]
    ground = np.array([70, 125, 45]) * (0.75 + 0.5 * grass)
    photo = np.where((yy >= horizon)[:, :, None], ground, photo)

    for _ in range(rng.integers(2, 6)):
        bw = int(w * rng.uniform(0.12, 0.3))
        left = int(rng.uniform(-0.1, 0.95) * w)
        top = int(horizon - h * rng.uniform(0.1, 0.35))
        bottom = horizon + max(size // 32, 1)
        inside = (xx >= left) & (xx < left + bw) & (yy >= top) & (yy < bottom)
        labels[inside] = BUILDING
        wall = np.array([rng.uniform(120, 190), rng.uniform(90, 150), rng.uniform(70, 120)])
        shade = 0.8 + 0.3 * np.clip((left + bw - xx) / max(bw, 1), 0, 1)[:, :, None]
        step = max(size // 16, 3)
        window = (((xx - left) % step) >= step // 2) & (((yy - top) % step) >= step // 2)
        color = np.where(window[:, :, None], np.array([210, 220, 140]), wall * shade)
        photo = np.where(inside[:, :, None], color, photo)

    cx = w * rng.uniform(0.3, 0.7)
    depth = np.clip((yy - horizon) / max(h - horizon, 1), 0, 1)
    half_width = (0.04 + rng.uniform(0.25, 0.4) * depth) * w
    road = (yy > horizon) & (np.abs(xx - cx) < half_width)
    labels[road] = ROAD
    dash = (np.abs(xx - cx) < 0.02 * w * (0.3 + depth)) & ((yy * (1.5 - depth)) % 8 < 4)
    asphalt = np.where(dash[:, :, None], np.array([235, 235, 200]), np.array([85, 85, 90]))
    photo = np.where(road[:, :, None], asphalt, photo)

    leaves = _smooth_noise(rng, h, w, max(size // 32, 2))[:, :, None]
    for _ in range(rng.integers(1, 5)):
        tx, r = rng.uniform(0, w), h * rng.uniform(0.06, 0.14)
        ty = horizon - r * rng.uniform(0.2, 1.0)
        crown = (xx - tx) ** 2 + (yy - ty) ** 2 < r**2
        labels[crown] = VEGETATION
        light = np.clip(1.0 - (yy - ty + r) / (2 * r), 0, 1)[:, :, None]
        green = np.array([30, 90, 25]) * (0.7 + 0.4 * leaves + 0.3 * light)
        photo = np.where(crown[:, :, None], green, photo)

    return PALETTE[labels], np.clip(photo, 0, 255).astype(np.uint8)


class RenderedSource:
    """A random-access Grain source whose example i of a split is rendered from (seed, split,
    i) by `render`: deterministic, shardable, nothing on disk."""

    kind = "rendered"  # The source's name in paths and messages.
    item = "item"  # Each example's name prefix.
    salt: tuple[int, ...] = ()  # Extra seed words, so two sources never share a stream.

    def __init__(self, num_examples: int, size: int, seed: int, split: str):
        if split not in SPLIT_IDS:
            raise ValueError(f"split {split!r} is not one of {sorted(SPLIT_IDS)}")
        self._num_examples, self._size = num_examples, size
        self._seed, self._split = seed, SPLIT_IDS[split]
        self.where = f"{self.kind}/{split}"

    def render(self, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def name(self, index: int) -> str:
        return f"{self.item}_{index:06d}"

    def path(self, index: int) -> str:
        return f"{self.where}[{index}]"

    def __len__(self) -> int:
        return self._num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self._seed, self._split, int(index), *self.salt])
        return self.render(rng, self._size)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={self._num_examples}, size={self._size}, "
                f"split={self._split})")


class SyntheticScenes(RenderedSource):
    """{'A': labels, 'B': photo} uint8 pairs of rendered street scenes."""

    kind, item = "synthetic_scenes", "scene"

    def render(self, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
        a, b = render_scene(rng, size)
        return {"A": a, "B": b}
