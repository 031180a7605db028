"""Generator and discriminator construction from the `model` config block."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from p2p_jax.models.discriminators import NLayerDiscriminator, PixelDiscriminator
from p2p_jax.models.resnet import ResnetGenerator
from p2p_jax.models.unet import UNetGenerator

GENERATORS = ("unet_128", "unet_256", "unet", "resnet_6blocks", "resnet_9blocks")
DISCRIMINATORS = ("basic", "n_layers", "pixel")


def compute_dtype(config: ml_collections.ConfigDict):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]


def generator_downsampling(model: ml_collections.ConfigDict) -> int:
    """The factor that image sides must be divisible by."""
    name = model.generator
    if name == "unet_128":
        return 2**7
    if name == "unet_256":
        return 2**8
    if name == "unet":
        return 2**model.num_downs
    return 4


def build_generator(config: ml_collections.ConfigDict, output_channels: int) -> nn.Module:
    model, dtype = config.model, compute_dtype(config)
    common = dict(output_channels=output_channels, ngf=model.ngf, norm=model.norm,
                  dropout_rate=model.dropout, upsample=model.upsample, dtype=dtype)
    name = model.generator
    if name.startswith("unet"):
        num_downs = {"unet_128": 7, "unet_256": 8}.get(name, model.num_downs)
        return UNetGenerator(num_downs=num_downs, **common)
    if name in ("resnet_6blocks", "resnet_9blocks"):
        return ResnetGenerator(num_blocks=int(name.split("_")[1][0]), **common)
    raise ValueError(f"model.generator={name!r} is not one of {GENERATORS}")


def build_discriminator(config: ml_collections.ConfigDict) -> nn.Module:
    model, dtype = config.model, compute_dtype(config)
    name = model.discriminator
    if name == "basic":
        return NLayerDiscriminator(3, model.ndf, model.norm, dtype)
    if name == "n_layers":
        return NLayerDiscriminator(model.n_layers_d, model.ndf, model.norm, dtype)
    if name == "pixel":
        return PixelDiscriminator(model.ndf, model.norm, dtype)
    raise ValueError(f"model.discriminator={name!r} is not one of {DISCRIMINATORS}")
