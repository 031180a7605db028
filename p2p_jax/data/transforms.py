"""Reference preprocessing: identical resize / crop / flip of every map of an example.

Values stay uint8 on the host (4x less to move than float32); the train step scales them to
[-1, 1] (or one-hot encodes label maps) on the device. Functions take an example dict and
transform every image in it the same way, so derived tasks (where only B exists yet) go
through the same code. Label and instance maps (`nearest` keys) are resized by nearest
neighbour, never interpolated.
"""

from __future__ import annotations

import numpy as np

from p2p_jax.config.choices import PREPROCESS_MODES
from p2p_jax.config.sizes import image_hw
from p2p_jax.data import images
from p2p_jax.errors import ConfigError


def crop_window(height: int, width: int, crop: tuple[int, int],
                rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a random crop of (height, width) `crop`; a clear error if the image
    is smaller."""
    crop_h, crop_w = crop
    if height < crop_h or width < crop_w:
        raise ConfigError(f"an image of {height}x{width} is smaller than the crop "
                          f"dataset.image_size={crop_h}x{crop_w}; lower image_size or raise "
                          "load_size")
    return int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))


def _resize(example: dict[str, np.ndarray], height: int, width: int,
            nearest: frozenset[str]) -> dict[str, np.ndarray]:
    return {k: (images.resize_nearest(v, height, width) if k in nearest
                else images.resize(v, height, width)) for k, v in example.items()}


def _resized(example: dict[str, np.ndarray], mode: str, load_size: int,
             crop: tuple[int, int], for_training: bool,
             nearest: frozenset[str]) -> dict[str, np.ndarray]:
    """The resize step of `mode`: to load_size (train) or crop-size (eval) squares, or to a
    width of load_size keeping the aspect ratio."""
    h, w = next(iter(example.values())).shape[:2]
    if mode == "resize_and_crop":
        height, width = (load_size, load_size) if for_training else crop
        return _resize(example, height, width, nearest)
    if mode.startswith("scale_width"):
        new_h = max(round(load_size * h / w), crop[0] if mode.endswith("crop") else 1)
        return _resize(example, new_h, load_size, nearest)
    return example


def preprocess(example: dict[str, np.ndarray], rng: np.random.Generator, mode: str,
               load_size: int, image_size, flip: bool,
               nearest: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Training view: the same random geometry for every map, as the reference does. A
    rectangular `image_size` (height, width) is also cropped after `scale_width`, so every
    example of a batch has its size (pix2pixHD's Cityscapes: width 1024 -> 1024x512)."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"dataset.preprocess={mode!r} is not one of {PREPROCESS_MODES}")
    crop = image_hw(image_size)
    example = _resized(example, mode, load_size, crop, for_training=True, nearest=nearest)
    rectangular = not isinstance(image_size, int)
    if mode in ("resize_and_crop", "crop", "scale_width_and_crop") or (
            rectangular and mode == "scale_width"):
        h, w = next(iter(example.values())).shape[:2]
        top, left = crop_window(h, w, crop, rng)
        example = {k: v[top:top + crop[0], left:left + crop[1]] for k, v in example.items()}
    if flip and rng.random() < 0.5:
        example = {k: v[:, ::-1] for k, v in example.items()}
    return {k: np.ascontiguousarray(v) for k, v in example.items()}


def eval_view(example: dict[str, np.ndarray], mode: str, load_size: int, image_size,
              nearest: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Deterministic evaluation view. `resize_and_crop` resizes to the training crop size;
    every other mode keeps the whole image (after its width scaling), of any size: the
    evaluator pads it to the generator's multiple and crops the output back."""
    return _resized(example, mode, load_size, image_hw(image_size), for_training=False,
                    nearest=nearest)
