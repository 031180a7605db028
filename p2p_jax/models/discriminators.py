"""PatchGAN discriminators: `basic` (70x70), `n_layers`, and the 1x1 `pixel` GAN."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models.layers import Conv, Dtype
from p2p_jax.models.norms import make_norm, uses_bias


class NLayerDiscriminator(nn.Module):
    """Logits per patch; `n_layers=3` is the 70x70 PatchGAN (30x30 logits at 256x256):
    C64 (no norm) - C128 - C256 (stride 2) - C512 (stride 1) - 1 logit, 4x4 kernels."""

    n_layers: int = 3
    ndf: int = 64
    norm: str = "batch"
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype, self.conv_impl)
        conv = functools.partial(Conv, kernel_size=4, padding=1, impl=self.conv_impl,
                                 dtype=self.dtype)
        x = nn.leaky_relu(conv(self.ndf, stride=2, use_bias=True)(x.astype(self.dtype)), 0.2)
        for n in range(1, self.n_layers + 1):
            x = conv(self.ndf * min(2**n, 8), stride=2 if n < self.n_layers else 1,
                     use_bias=uses_bias(self.norm))(x)
            x = nn.leaky_relu(norm()(x), 0.2)
        return conv(1, stride=1, use_bias=True)(x).astype(jnp.float32)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: classifies each pixel pair independently."""

    ndf: int = 64
    norm: str = "batch"
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype, self.conv_impl)
        conv = functools.partial(Conv, kernel_size=1, impl=self.conv_impl, dtype=self.dtype)
        x = nn.leaky_relu(conv(self.ndf, use_bias=True)(x.astype(self.dtype)), 0.2)
        x = nn.leaky_relu(norm()(conv(self.ndf * 2, use_bias=uses_bias(self.norm))(x)), 0.2)
        return conv(1, use_bias=uses_bias(self.norm))(x).astype(jnp.float32)
