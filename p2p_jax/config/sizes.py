"""Image sizes from the config: the training crop as (height, width), and the factor a
generator's input sides must be divisible by. Light (no JAX, no network code): the start-up
checks use it."""

from __future__ import annotations

import ml_collections


def image_hw(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`dataset.image_size`: a side (square crops) or (height, width)."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


def unet_levels(model: ml_collections.ConfigDict) -> int:
    """A U-Net's number of downsamplings: fixed by unet_128 / unet_256, else model.num_downs."""
    return {"unet_128": 7, "unet_256": 8}.get(model.generator, model.num_downs)


def downsampling_factor(model: ml_collections.ConfigDict) -> int:
    """The factor that a generator's input sides must be divisible by."""
    name = model.generator
    if name.startswith("unet"):
        return 2**unet_levels(model)
    if name == "global":
        return 2**model.n_downsample_global
    if name == "local":  # The global branch runs on the input pooled once per enhancer.
        return 2 ** (model.n_downsample_global + model.n_local_enhancers)
    return 4
