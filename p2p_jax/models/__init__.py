"""The reference's architectures: U-Net and ResNet generators, PatchGAN discriminators.

This package's top level stays free of network code (the start-up checks import it for the
size rule below); `build` makes the networks from the config.
"""

from __future__ import annotations

import ml_collections


def downsampling_factor(model: ml_collections.ConfigDict) -> int:
    """The factor that a generator's input sides must be divisible by."""
    name = model.generator
    if name == "unet_128":
        return 2**7
    if name == "unet_256":
        return 2**8
    if name == "unet":
        return 2**model.num_downs
    return 4
