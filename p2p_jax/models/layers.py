"""The layers the networks are built of: a padded convolution and the stride-2 upsampling.

Everything is NHWC. Parameters are those of `nn.Conv` ('kernel' (k, k, in, out), 'bias') and
initialised as the reference does (N(0, 0.02) kernels, zero biases). The arithmetic is
`p2p_jax.ops`, in the implementation (`impl`) the builder chose once for the run.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax import ops
from p2p_jax.errors import ConfigError
from p2p_jax.models import color

Dtype = Any

conv_init = nn.initializers.normal(stddev=0.02)


class Conv(nn.Module):
    """A conv with explicit symmetric zero padding, as PyTorch's `padding=`."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", conv_init, (k, k, x.shape[-1], self.features))
        y = ops.conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.stride,
                       self.padding, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y


class Upsample2x(nn.Module):
    """The reference's stride-2 transposed conv (`mode="conv_transpose"`, PyTorch
    ConvTranspose2d semantics), or a resize (nearest or bilinear) and a 3x3 conv, doubling H
    and W."""

    features: int
    kernel_size: int = 4
    padding: int = 1
    output_padding: int = 0
    use_bias: bool = True
    mode: str = "conv_transpose"
    impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        if self.mode in ("resize_nearest", "resize_bilinear"):
            method = "nearest" if self.mode == "resize_nearest" else "bilinear"
            x = jax.image.resize(x, (n, 2 * h, 2 * w, c), method=method)
            return Conv(self.features, kernel_size=3, padding=1, use_bias=self.use_bias,
                        impl=self.impl, dtype=self.dtype)(x)
        if self.mode != "conv_transpose":
            raise ValueError(f"model.upsample={self.mode!r} is not one of conv_transpose, "
                             "resize_nearest, resize_bilinear")
        kernel = self.param("kernel", conv_init,
                            (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
        y = ops.conv_transpose2d(x.astype(self.dtype), kernel.astype(self.dtype), 2,
                                 self.padding, self.output_padding, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y


def final_channels(output_channels: int, chroma: str) -> int:
    """The last convolution's channels: the image's, or two chroma channels (`model.chroma`)."""
    return output_channels if chroma == "none" else 2


def generator_output(image: jax.Array, out: jax.Array, residual: bool, chroma: str
                     ) -> jax.Array:
    """The image a U-Net or ResNet generator returns from its final tanh `out`: `out` itself;
    with `residual` (`model.residual`) the input plus `out`, clipped to the image range; with
    `chroma` (`model.chroma`) the input's lightness coloured by `out` (`models.color`)."""
    if chroma != "none":
        if image.shape[-1] != 1:
            raise ConfigError(f"model.chroma={chroma!r} colours a one-channel input, not "
                              f"{image.shape[-1]} channels: set dataset.input_channels=1")
        return color.chroma_output(chroma, image, out)
    if not residual:
        return out
    if image.shape[-1] != out.shape[-1]:
        raise ConfigError(
            f"model.residual adds the input to the output, but the input has "
            f"{image.shape[-1]} channels and the output {out.shape[-1]}; set "
            f"dataset.input_channels={out.shape[-1]} or model.residual=False")
    return jnp.clip(image.astype(jnp.float32) + out, -1.0, 1.0)
