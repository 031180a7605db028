"""The FID Inception-v3 (pool features, 2048-d) in Flax, loading the standard weights file.

FID and KID are defined on the features of the TensorFlow Inception graph of 2015-12-05;
pytorch-fid ported it (`pt_inception-2015-12-05-6726825d.pth`, with the FID-specific pooling of
its Mixed blocks). Module names follow that port's state_dict so the weights map one to one.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax.errors import MissingFileError, UserError
from p2p_jax.interop import torch_files

WEIGHTS_HELP = (
    "download pt_inception-2015-12-05-6726825d.pth (the FID Inception weights of pytorch-fid: "
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth) on a machine with network access and pass "
    "--config.eval.inception_weights=/path/to/it")
INPUT_SIZE = 299
FEATURES = 2048


class BasicConv(nn.Module):
    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        pad = ((self.padding[0], self.padding[0]), (self.padding[1], self.padding[1]))
        x = nn.Conv(self.features, self.kernel, self.stride, pad, use_bias=False, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool_excluding_padding(x):
    """3x3/1 average over the valid pixels only (count_include_pad=False)."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride=2, padding="VALID"):
    return nn.max_pool(x, (3, 3), (stride, stride), padding)


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(
            _avg_pool_excluding_padding(x))
        return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], -1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_excluding_padding(x))
        return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], -1)


class InceptionE(nn.Module):
    """`max_pool`: the FID graph's last block pools with max instead of average."""

    max_pool: bool

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)],
                             -1)
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)],
                             -1)
        pooled = (_max_pool(x, 1, ((1, 1), (1, 1))) if self.max_pool
                  else _avg_pool_excluding_padding(x))
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], -1)


def resize_to_input(images: jax.Array) -> jax.Array:
    """(N, H, W, C) float images to 299x299 as pytorch-fid does (`F.interpolate(...,
    mode='bilinear', align_corners=False)`: half-pixel centres, no antialiasing), so that FID
    is comparable with published figures."""
    n, _, _, c = images.shape
    return jax.image.resize(images, (n, INPUT_SIZE, INPUT_SIZE, c), "bilinear", antialias=False)


class FIDInceptionV3(nn.Module):
    """[0, 1] images (N, H, W, 3), any size -> 2048-d pool features (N, 2048)."""

    @nn.compact
    def __call__(self, images):
        x = 2.0 * resize_to_input(images) - 1.0
        x = BasicConv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                         ("Mixed_6e", 192)):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


_TORCH_TO_FLAX = {"conv.weight": ("params", "conv", "kernel"),
                  "bn.weight": ("params", "bn", "scale"), "bn.bias": ("params", "bn", "bias"),
                  "bn.running_mean": ("batch_stats", "bn", "mean"),
                  "bn.running_var": ("batch_stats", "bn", "var")}


def variables_from_state_dict(state: dict[str, np.ndarray]) -> dict:
    """pytorch-fid's state_dict -> Flax variables (OIHW kernels to HWIO); fc and BN step
    counters are not used."""
    variables: dict = {"params": {}, "batch_stats": {}}
    for name, value in state.items():
        module, _, leaf = name.rpartition(".")
        module, _, layer = module.rpartition(".")
        key = f"{layer}.{leaf}"
        if key not in _TORCH_TO_FLAX:
            continue  # fc.*, *.num_batches_tracked
        collection, sub, flax_leaf = _TORCH_TO_FLAX[key]
        node = variables[collection]
        for part in module.split("."):
            node = node.setdefault(part, {})
        if flax_leaf == "kernel":
            value = value.transpose(2, 3, 1, 0)
        node.setdefault(sub, {})[flax_leaf] = jnp.asarray(value, jnp.float32)
    return variables


def load_variables(path: str) -> dict:
    """Flax variables from the FID Inception weights file; one clear line if it is missing or
    is not that file."""
    if not path or not os.path.isfile(path):
        raise MissingFileError(f"FID/KID need the Inception weights file "
                                f"(eval.inception_weights={path!r} not found): {WEIGHTS_HELP}")
    variables = variables_from_state_dict(torch_files.load_state_dict(path))
    expected = jax.eval_shape(FIDInceptionV3().init, jax.random.PRNGKey(0),
                              jnp.zeros((1, 75, 75, 3)))
    got = jax.tree.map(jnp.shape, variables)
    if jax.tree.map(lambda x: x.shape, expected) != got:
        raise UserError(f"{path} does not hold the FID Inception-v3 weights: {WEIGHTS_HELP}")
    return variables
