"""The reference's U-Net generator (`unet_128`, `unet_256`, or any depth and width)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from p2p_jax.models.layers import Conv, Dtype, Upsample2x, final_channels, generator_output
from p2p_jax.models.norms import make_norm, uses_bias


class UNetGenerator(nn.Module):
    """U-Net with skip connections, built inside-out like the reference's skip blocks.

    Level i (0 = outermost) has `ngf * min(2**i, 8)` channels. Dropout follows the up-path
    norm of the `num_downs - 5` blocks just outside the innermost one. `residual`, `chroma`:
    how the output is made of the input and the last layer's (`layers.generator_output`).
    """

    output_channels: int = 3
    num_downs: int = 8
    ngf: int = 64
    norm: str = "batch"
    dropout_rate: float = 0.5
    upsample: str = "conv_transpose"
    conv_impl: str = "xla"
    residual: bool = False
    chroma: str = "none"
    dtype: Dtype = jnp.float32

    def channels(self, level: int) -> int:
        return self.ngf * min(2**level, 8)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype, self.conv_impl)
        bias = uses_bias(self.norm)
        image, x = x, x.astype(self.dtype)
        skips = []
        for level in range(self.num_downs):
            outermost, innermost = level == 0, level == self.num_downs - 1
            if not outermost:
                x = nn.leaky_relu(x, 0.2)
            x = Conv(self.channels(level), kernel_size=4, stride=2, padding=1, use_bias=bias,
                     impl=self.conv_impl, dtype=self.dtype, name=f"down_{level}")(x)
            if not (outermost or innermost):
                x = norm(name=f"down_{level}_norm")(x)
            skips.append(x)
        dropout_levels = range(self.num_downs - 1 - max(self.num_downs - 5, 0), self.num_downs - 1)
        for level in reversed(range(self.num_downs)):
            innermost = level == self.num_downs - 1
            if not innermost:
                x = jnp.concatenate([skips[level], x], axis=-1)
            x = nn.relu(x)
            if level == 0:
                x = Upsample2x(final_channels(self.output_channels, self.chroma),
                               mode=self.upsample, impl=self.conv_impl, dtype=self.dtype,
                               name="up_0")(x)
                out = jnp.tanh(x.astype(jnp.float32))
                return generator_output(image, out, self.residual, self.chroma)
            x = Upsample2x(self.channels(level - 1), use_bias=bias, mode=self.upsample,
                           impl=self.conv_impl, dtype=self.dtype, name=f"up_{level}")(x)
            x = norm(name=f"up_{level}_norm")(x)
            if level in dropout_levels and self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        raise AssertionError("unreachable")
