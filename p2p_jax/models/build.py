"""Generator and discriminator construction from the `model` config block."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from p2p_jax.config.choices import DISCRIMINATORS, GENERATORS
from p2p_jax.config.sizes import unet_levels
from p2p_jax.models.discriminators import NLayerDiscriminator, PixelDiscriminator
from p2p_jax.models.pix2pixhd import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
from p2p_jax.models.resnet import ResnetGenerator
from p2p_jax.models.unet import UNetGenerator


def compute_dtype(config: ml_collections.ConfigDict):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]


def build_generator(config: ml_collections.ConfigDict, output_channels: int,
                    conv_impl: str) -> nn.Module:
    """`conv_impl` is the resolved implementation ("xla" or "cpu"; see p2p_jax.ops)."""
    model = config.model
    common = dict(output_channels=output_channels, ngf=model.ngf, norm=model.norm,
                  dropout_rate=model.dropout, upsample=model.upsample, conv_impl=conv_impl,
                  residual=model.residual, chroma=model.chroma,
                  dtype=compute_dtype(config))
    name = model.generator
    if name.startswith("unet"):
        num_downs = unet_levels(model)
        return UNetGenerator(num_downs=num_downs, **common)
    if name in ("resnet_6blocks", "resnet_9blocks"):
        return ResnetGenerator(num_blocks=int(name.split("_")[1][0]), **common)
    hd = dict(output_channels=output_channels, ngf=model.ngf, norm=model.norm,
              remat=model.remat != "none", upsample=model.upsample, conv_impl=conv_impl,
              dtype=compute_dtype(config))
    if name == "global":
        return GlobalGenerator(n_downsampling=model.n_downsample_global,
                               n_blocks=model.n_blocks_global, **hd)
    if name == "local":
        return LocalEnhancer(n_downsample_global=model.n_downsample_global,
                             n_blocks_global=model.n_blocks_global,
                             n_local_enhancers=model.n_local_enhancers,
                             n_blocks_local=model.n_blocks_local, **hd)
    raise ValueError(f"model.generator={name!r} is not one of {GENERATORS}")


def build_discriminator(config: ml_collections.ConfigDict, conv_impl: str) -> nn.Module:
    model = config.model
    common = dict(ndf=model.ndf, norm=model.norm, conv_impl=conv_impl,
                  dtype=compute_dtype(config))
    name = model.discriminator
    if name == "basic":
        return NLayerDiscriminator(n_layers=3, **common)
    if name == "n_layers":
        return NLayerDiscriminator(n_layers=model.n_layers_d, **common)
    if name == "pixel":
        return PixelDiscriminator(**common)
    if name == "multiscale":
        return MultiscaleDiscriminator(n_layers=model.n_layers_d, num_d=model.num_d,
                                       remat=model.remat != "none", **common)
    raise ValueError(f"model.discriminator={name!r} is not one of {DISCRIMINATORS}")
