"""The reference's ResNet generator (`resnet_6blocks`, `resnet_9blocks`)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax import ops
from p2p_jax.models.layers import Conv, Dtype, Upsample2x, final_channels, generator_output
from p2p_jax.models.norms import make_norm, uses_bias


class ResnetBlock(nn.Module):
    """x + norm(conv3x3(relu(norm(conv3x3(x))))), reflect-padded; optional dropout between."""

    features: int
    norm: str
    dropout_rate: float
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32
    use_bias: bool | None = None  # None: the reference's rule (none before a batch norm).

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype, self.conv_impl)
        bias = uses_bias(self.norm) if self.use_bias is None else self.use_bias
        conv = functools.partial(Conv, self.features, kernel_size=3, use_bias=bias,
                                 impl=self.conv_impl, dtype=self.dtype)
        y = nn.relu(norm()(conv()(ops.reflect_pad(x, 1))))
        if self.dropout_rate > 0:
            y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        return x + norm()(conv()(ops.reflect_pad(y, 1)))


class ResnetGenerator(nn.Module):
    """c7s1-64, d128, d256, N residual blocks, u128, u64, c7s1-out, tanh; `residual`, `chroma`:
    how the output is made of the input and that (`layers.generator_output`)."""

    output_channels: int = 3
    num_blocks: int = 9
    ngf: int = 64
    norm: str = "batch"
    dropout_rate: float = 0.5
    upsample: str = "conv_transpose"
    conv_impl: str = "xla"
    residual: bool = False
    chroma: str = "none"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype, self.conv_impl)
        bias = uses_bias(self.norm)
        conv = functools.partial(Conv, impl=self.conv_impl, dtype=self.dtype)
        image = x
        x = conv(self.ngf, kernel_size=7, use_bias=bias)(ops.reflect_pad(x.astype(self.dtype), 3))
        x = nn.relu(norm()(x))
        for mult in (2, 4):
            x = conv(self.ngf * mult, kernel_size=3, stride=2, padding=1, use_bias=bias)(x)
            x = nn.relu(norm()(x))
        for _ in range(self.num_blocks):
            x = ResnetBlock(self.ngf * 4, self.norm, self.dropout_rate, self.conv_impl,
                            self.dtype)(x, train)
        for mult in (2, 1):
            x = Upsample2x(self.ngf * mult, kernel_size=3, padding=1, output_padding=1,
                           use_bias=bias, mode=self.upsample, impl=self.conv_impl,
                           dtype=self.dtype)(x)
            x = nn.relu(norm()(x))
        x = conv(final_channels(self.output_channels, self.chroma), kernel_size=7,
                 use_bias=True)(ops.reflect_pad(x, 3))
        out = jnp.tanh(x.astype(jnp.float32))
        return generator_output(image, out, self.residual, self.chroma)
