"""PatchGAN discriminators: `basic` (70x70), `n_layers`, and the 1x1 `pixel` GAN."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models.layers import Dtype, conv, make_norm, uses_bias


class NLayerDiscriminator(nn.Module):
    """Logits per patch; `n_layers=3` is the 70x70 PatchGAN (30x30 logits at 256x256)."""

    n_layers: int = 3
    ndf: int = 64
    norm: str = "batch"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype)
        bias = uses_bias(self.norm)
        x = nn.leaky_relu(conv(self.ndf, 4, 2, 1, True, self.dtype)(x.astype(self.dtype)), 0.2)
        for n in range(1, self.n_layers + 1):
            stride = 2 if n < self.n_layers else 1
            x = conv(self.ndf * min(2**n, 8), 4, stride, 1, bias, self.dtype)(x)
            x = nn.leaky_relu(norm()(x), 0.2)
        return conv(1, 4, 1, 1, True, self.dtype)(x).astype(jnp.float32)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: classifies each pixel pair independently."""

    ndf: int = 64
    norm: str = "batch"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype)
        bias = uses_bias(self.norm)
        x = nn.leaky_relu(conv(self.ndf, 1, 1, 0, True, self.dtype)(x.astype(self.dtype)), 0.2)
        x = nn.leaky_relu(norm()(conv(self.ndf * 2, 1, 1, 0, bias, self.dtype)(x)), 0.2)
        return conv(1, 1, 1, 0, bias, self.dtype)(x).astype(jnp.float32)
