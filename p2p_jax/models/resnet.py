"""The reference's ResNet generator (`resnet_6blocks`, `resnet_9blocks`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models.layers import Dtype, Upsample2x, conv, make_norm, uses_bias


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class ResnetBlock(nn.Module):
    features: int
    norm: str
    dropout_rate: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype)
        bias = uses_bias(self.norm)
        y = conv(self.features, 3, 1, 0, bias, self.dtype)(reflect_pad(x, 1))
        y = nn.relu(norm()(y))
        if self.dropout_rate > 0:
            y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        y = conv(self.features, 3, 1, 0, bias, self.dtype)(reflect_pad(y, 1))
        return x + norm()(y)


class ResnetGenerator(nn.Module):
    """c7s1-64, d128, d256, N residual blocks, u128, u64, c7s1-out, tanh."""

    output_channels: int = 3
    num_blocks: int = 9
    ngf: int = 64
    norm: str = "batch"
    dropout_rate: float = 0.5
    upsample: str = "auto"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype)
        bias = uses_bias(self.norm)
        x = conv(self.ngf, 7, 1, 0, bias, self.dtype)(reflect_pad(x.astype(self.dtype), 3))
        x = nn.relu(norm()(x))
        for mult in (2, 4):
            x = nn.relu(norm()(conv(self.ngf * mult, 3, 2, 1, bias, self.dtype)(x)))
        for _ in range(self.num_blocks):
            x = ResnetBlock(self.ngf * 4, self.norm, self.dropout_rate, self.dtype)(x, train)
        for mult in (2, 1):
            x = Upsample2x(self.ngf * mult, kernel_size=3, padding=1, output_padding=1,
                           use_bias=bias, mode=self.upsample, dtype=self.dtype)(x)
            x = nn.relu(norm()(x))
        x = conv(self.output_channels, 7, 1, 0, True, self.dtype)(reflect_pad(x, 3))
        return jnp.tanh(x.astype(jnp.float32))
