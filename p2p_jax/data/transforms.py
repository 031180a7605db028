"""Reference preprocessing: identical resize / crop / flip of A and B, on uint8 arrays.

Values stay uint8 on the host (4x less to move than float32); the train step scales them to
[-1, 1] on the device. Functions take an example dict and transform every image in it the same
way, so derived tasks (where only B exists yet) go through the same code.
"""

from __future__ import annotations

import numpy as np

from p2p_jax.choices import PREPROCESS_MODES
from p2p_jax.data import images


def crop_window(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a random size x size crop; a clear error if the image is smaller."""
    if height < size or width < size:
        raise ValueError(f"image of {height}x{width} is smaller than the crop "
                         f"dataset.image_size={size}; lower image_size or raise load_size")
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def _resized(example: dict[str, np.ndarray], mode: str, load_size: int, crop_size: int,
             for_training: bool) -> dict[str, np.ndarray]:
    """The resize step of `mode`: to load_size (train) or crop_size (eval) squares, or to a
    width of load_size keeping the aspect ratio."""
    h, w = next(iter(example.values())).shape[:2]
    if mode == "resize_and_crop":
        size = load_size if for_training else crop_size
        return {k: images.resize(v, size, size) for k, v in example.items()}
    if mode.startswith("scale_width"):
        new_h = max(round(load_size * h / w), crop_size if mode.endswith("crop") else 1)
        return {k: images.resize(v, new_h, load_size) for k, v in example.items()}
    return example


def preprocess(example: dict[str, np.ndarray], rng: np.random.Generator, mode: str,
               load_size: int, crop_size: int, flip: bool) -> dict[str, np.ndarray]:
    """Training view: the same random geometry for every image, as the reference does."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"dataset.preprocess={mode!r} is not one of {PREPROCESS_MODES}")
    example = _resized(example, mode, load_size, crop_size, for_training=True)
    if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
        h, w = next(iter(example.values())).shape[:2]
        top, left = crop_window(h, w, crop_size, rng)
        example = {k: v[top:top + crop_size, left:left + crop_size] for k, v in example.items()}
    if flip and rng.random() < 0.5:
        example = {k: v[:, ::-1] for k, v in example.items()}
    return {k: np.ascontiguousarray(v) for k, v in example.items()}


def eval_view(example: dict[str, np.ndarray], mode: str, load_size: int,
              crop_size: int) -> dict[str, np.ndarray]:
    """Deterministic evaluation view. `resize_and_crop` resizes to the training crop size;
    every other mode keeps the whole image (after its width scaling), of any size: the
    evaluator pads it to the generator's multiple and crops the output back."""
    return _resized(example, mode, load_size, crop_size, for_training=False)
