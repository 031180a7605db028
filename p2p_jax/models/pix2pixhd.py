"""pix2pixHD's networks (Wang et al., CVPR 2018; NVIDIA/pix2pixHD models/networks.py): the
coarse-to-fine generators and the multi-scale discriminator, parameter for parameter.

- `GlobalGenerator`: c7s1-ngf, `n_downsampling` stride-2 3x3 convs doubling the channels,
  `n_blocks` residual blocks, as many stride-2 3x3 transposed convs (output_padding 1), c7s1
  to the output, tanh. Every conv has a bias, whatever the norm (instance by default).
- `LocalEnhancer`: a global generator of ngf * 2**n_local_enhancers without its last conv runs
  on the input average-pooled once per enhancer; each enhancer's downsampled features are
  summed with the coarser output before its residual blocks and upsampling.
- `MultiscaleDiscriminator`: `num_d` PatchGANs (4x4 kernels, padding 2, channels capped at
  512), each on the input average-pooled once more, returning every layer's output (the last
  is the logits) for feature matching.

`remat` recomputes each residual block's and each discriminator scale's activations in the
backward pass instead of keeping them (jax.checkpoint): memory for compute.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax import ops
from p2p_jax.models.layers import Conv, Dtype, Upsample2x
from p2p_jax.models.norms import make_norm
from p2p_jax.models.resnet import ResnetBlock


def _window_counts(size: int) -> np.ndarray:
    """How many of a 3-wide, stride-2, 1-padded window's taps fall inside `size` positions."""
    starts = 2 * np.arange((size + 1) // 2) - 1
    return np.minimum(starts + 2, size - 1) - np.maximum(starts, 0) + 1


def downsample(x: jax.Array) -> jax.Array:
    """pix2pixHD's pyramid step: AvgPool2d(3, stride=2, padding=1, count_include_pad=False).
    The divisor is a host constant (rows x columns of in-image taps), not a pooled ones map
    that XLA would fold at compile time for seconds per full-resolution call. Sums in float32,
    the result in x's dtype."""
    sums = nn.pool(x.astype(jnp.float32), 0.0, jax.lax.add, (3, 3), (2, 2), ((1, 1), (1, 1)))
    counts = np.outer(_window_counts(x.shape[1]), _window_counts(x.shape[2]))[..., None]
    return (sums / counts.astype(np.float32)).astype(x.dtype)


def _block(remat: bool):
    return nn.remat(ResnetBlock, static_argnums=(2,)) if remat else ResnetBlock


class GlobalGenerator(nn.Module):
    """pix2pixHD's `global` generator; `final=False` leaves out the last conv and tanh (the
    coarse branch of a LocalEnhancer), returning ngf-channel features."""

    output_channels: int = 3
    ngf: int = 64
    n_downsampling: int = 4
    n_blocks: int = 9
    norm: str = "instance"
    final: bool = True
    remat: bool = False
    upsample: str = "conv_transpose"
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype, self.conv_impl)
        conv = functools.partial(Conv, use_bias=True, impl=self.conv_impl, dtype=self.dtype)
        x = conv(self.ngf, kernel_size=7, name="head")(ops.reflect_pad(x.astype(self.dtype), 3))
        x = nn.relu(norm(name="head_norm")(x))
        for i in range(self.n_downsampling):
            x = conv(self.ngf * 2 ** (i + 1), kernel_size=3, stride=2, padding=1,
                     name=f"down_{i}")(x)
            x = nn.relu(norm(name=f"down_{i}_norm")(x))
        block = _block(self.remat)
        for i in range(self.n_blocks):
            x = block(self.ngf * 2**self.n_downsampling, self.norm, 0.0, self.conv_impl,
                      self.dtype, use_bias=True, name=f"block_{i}")(x, train)
        for i in range(self.n_downsampling):
            x = Upsample2x(self.ngf * 2 ** (self.n_downsampling - i - 1), kernel_size=3,
                           padding=1, output_padding=1, use_bias=True, mode=self.upsample,
                           impl=self.conv_impl, dtype=self.dtype, name=f"up_{i}")(x)
            x = nn.relu(norm(name=f"up_{i}_norm")(x))
        if not self.final:
            return x
        x = conv(self.output_channels, kernel_size=7, name="tail")(ops.reflect_pad(x, 3))
        return jnp.tanh(x.astype(jnp.float32))


class EnhancerBranch(nn.Module):
    """One local enhancer: its downsampling front on the input at this scale, summed with the
    coarser branch's output, residual blocks, the upsampling and (last branch) the output."""

    ngf: int
    n_blocks: int
    last: bool
    output_channels: int = 3
    norm: str = "instance"
    remat: bool = False
    upsample: str = "conv_transpose"
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, coarse: jax.Array, train: bool) -> jax.Array:
        norm = make_norm(self.norm, train, self.dtype, self.conv_impl)
        conv = functools.partial(Conv, use_bias=True, impl=self.conv_impl, dtype=self.dtype)
        y = conv(self.ngf, kernel_size=7, name="head")(ops.reflect_pad(x.astype(self.dtype), 3))
        y = nn.relu(norm(name="head_norm")(y))
        y = conv(self.ngf * 2, kernel_size=3, stride=2, padding=1, name="down")(y)
        y = nn.relu(norm(name="down_norm")(y)) + coarse
        block = _block(self.remat)
        for i in range(self.n_blocks):
            y = block(self.ngf * 2, self.norm, 0.0, self.conv_impl, self.dtype,
                      use_bias=True, name=f"block_{i}")(y, train)
        y = Upsample2x(self.ngf, kernel_size=3, padding=1, output_padding=1, use_bias=True,
                       mode=self.upsample, impl=self.conv_impl, dtype=self.dtype,
                       name="up")(y)
        y = nn.relu(norm(name="up_norm")(y))
        if not self.last:
            return y
        y = conv(self.output_channels, kernel_size=7, name="tail")(ops.reflect_pad(y, 3))
        return jnp.tanh(y.astype(jnp.float32))


class LocalEnhancer(nn.Module):
    """pix2pixHD's `local` generator: parameters 'global' (a GlobalGenerator of
    ngf * 2**n_local_enhancers, final=False) and 'enhancer_<n>' for n = 1 .. coarse to fine."""

    output_channels: int = 3
    ngf: int = 32
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 1
    n_blocks_local: int = 3
    norm: str = "instance"
    remat: bool = False
    upsample: str = "conv_transpose"
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        pyramid = [x]  # The pooled scales of a one-hot map are no longer one-hot: dense.
        for _ in range(self.n_local_enhancers):
            pyramid.append(downsample(ops.as_array(pyramid[-1], self.dtype)))
        common = dict(norm=self.norm, remat=self.remat, upsample=self.upsample,
                      conv_impl=self.conv_impl, dtype=self.dtype)
        out = GlobalGenerator(self.output_channels, self.ngf * 2**self.n_local_enhancers,
                              self.n_downsample_global, self.n_blocks_global, final=False,
                              name="global", **common)(pyramid[-1], train)
        for n in range(1, self.n_local_enhancers + 1):
            out = EnhancerBranch(self.ngf * 2 ** (self.n_local_enhancers - n),
                                 self.n_blocks_local, n == self.n_local_enhancers,
                                 self.output_channels, name=f"enhancer_{n}", **common)(
                pyramid[self.n_local_enhancers - n], out, train)
        return out


class PatchDiscriminatorHD(nn.Module):
    """pix2pixHD's NLayerDiscriminator with getIntermFeat: every layer's output, the last the
    logits: C(ndf) s2, C(2ndf) .. s2 with norm (channels capped at 512), one stride-1 C with
    norm, a stride-1 conv to one logit; 4x4 kernels, padding 2, biases everywhere."""

    ndf: int = 64
    n_layers: int = 3
    norm: str = "instance"
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> list[jax.Array]:
        norm = make_norm(self.norm, train, self.dtype, self.conv_impl)
        conv = functools.partial(Conv, kernel_size=4, padding=2, use_bias=True,
                                 impl=self.conv_impl, dtype=self.dtype)
        x = nn.leaky_relu(conv(self.ndf, stride=2, name="layer_0")(x.astype(self.dtype)), 0.2)
        outputs, features = [x], self.ndf
        for n in range(1, self.n_layers + 1):
            features = min(features * 2, 512)
            x = conv(features, stride=2 if n < self.n_layers else 1, name=f"layer_{n}")(x)
            x = nn.leaky_relu(norm(name=f"layer_{n}_norm")(x), 0.2)
            outputs.append(x)
        logits = conv(1, stride=1, name=f"layer_{self.n_layers + 1}")(x)
        return [*outputs, logits.astype(jnp.float32)]


class MultiscaleDiscriminator(nn.Module):
    """`num_d` PatchDiscriminatorHDs: 'scale_<k>' sees the input pooled num_d - 1 - k times
    (pix2pixHD's names: the last scale sees full resolution). Returns, finest first, each
    scale's list of layer outputs."""

    ndf: int = 64
    n_layers: int = 3
    num_d: int = 2
    norm: str = "instance"
    remat: bool = False
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> list[list[jax.Array]]:
        scale = (nn.remat(PatchDiscriminatorHD, static_argnums=(2,)) if self.remat
                 else PatchDiscriminatorHD)
        results = []
        for i in range(self.num_d):
            results.append(scale(self.ndf, self.n_layers, self.norm, self.conv_impl, self.dtype,
                                 name=f"scale_{self.num_d - 1 - i}")(x, train))
            if i != self.num_d - 1:
                x = downsample(x)
        return results
