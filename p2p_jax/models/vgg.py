"""VGG19's convolutional features up to relu5_1, for pix2pixHD's perceptual loss, loading
torchvision's ImageNet weights (`vgg19-dcbb9e9d.pth`) without torch.

The five outputs are relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1: the ends of
torchvision's `features[0:2]`, `[2:7]`, `[7:12]`, `[12:21]`, `[21:30]` (pix2pixHD's slices).
Conv parameters are named by their index in `features`, as in the weights file.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax.errors import MissingFileError, UserError
from p2p_jax.interop import torch_files
from p2p_jax.models.layers import Conv, Dtype

WEIGHTS_HELP = (
    "torchvision's ImageNet VGG19, vgg19-dcbb9e9d.pth (https://download.pytorch.org/models/"
    "vgg19-dcbb9e9d.pth, or torchvision.models.vgg19(weights='IMAGENET1K_V1')); download it on "
    "a machine with network access and pass --config.loss.vgg_weights=/path/to/it")
# torchvision's VGG19 ('E') `features`: a conv's channels (the conv at index i, its ReLU at
# i + 1) or "M", a 2x2 max pool.
CONFIG_E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
            512, 512, 512, 512, "M")
SLICE_ENDS = (2, 7, 12, 21, 30)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layers() -> list[tuple[int, int | str]]:
    """(index in `features`, channels or "M") for the convs and pools up to relu5_1."""
    layers, index = [], 0
    for item in CONFIG_E:
        if index >= SLICE_ENDS[-1]:
            break
        layers.append((index, item))
        index += 1 if item == "M" else 2
    return layers


def slices() -> list[tuple[tuple[int, int | str], ...]]:
    """The layers of each of pix2pixHD's five slices, in order."""
    starts = (0, *SLICE_ENDS[:-1])
    return [tuple(layer for layer in _layers() if start <= layer[0] < end)
            for start, end in zip(starts, SLICE_ENDS, strict=True)]


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """MaxPool2d(2, 2) (odd sizes floored) as a max over a reshape: its gradient is an
    elementwise mask, where a strided max pool's takes a windowed select-and-scatter that XLA's
    CPU backend expands into index tensors of 4x the input's size."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class VGG19Features(nn.Module):
    """[-1, 1] RGB images -> the five relu features; `normalize`: ImageNet mean/std on [0, 1]
    (torchvision's convention) first, else the images as they are (what pix2pixHD does).
    `remat` recomputes each slice in the backward pass."""

    normalize: bool = True
    remat: bool = False
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        if self.normalize:
            x = ((x + 1.0) / 2.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        x = x.astype(self.dtype)
        stage = nn.remat(_Slice) if self.remat else _Slice
        features = []
        for number, layers in enumerate(slices()):
            x = stage(layers, self.conv_impl, self.dtype, name=f"slice_{number + 1}")(x)
            features.append(x)
        return features


class _Slice(nn.Module):
    layers: tuple[tuple[int, int | str], ...]
    conv_impl: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for index, item in self.layers:
            if item == "M":
                x = max_pool_2x2(x)
            else:
                x = nn.relu(Conv(item, kernel_size=3, padding=1, use_bias=True,
                                 impl=self.conv_impl, dtype=self.dtype,
                                 name=f"features_{index}")(x))
        return x


def params_from_state_dict(state: dict[str, np.ndarray]) -> dict:
    """torchvision's VGG19 state_dict -> this module's parameters (OIHW kernels to HWIO); the
    classifier and the layers past relu5_1 are not used."""
    params = {}
    for number, layers in enumerate(slices()):
        stage = {}
        for index in (index for index, item in layers if item != "M"):
            weight = state.get(f"features.{index}.weight")
            bias = state.get(f"features.{index}.bias")
            if weight is None or bias is None:
                raise KeyError(f"features.{index}")
            stage[f"features_{index}"] = {"kernel": weight.transpose(2, 3, 1, 0),
                                          "bias": bias}
        params[f"slice_{number + 1}"] = stage
    return params


def load_params(path: str) -> dict:
    """VGG19 parameters from torchvision's weights file; one clear line if it is missing or is
    not that network."""
    if not path or not os.path.isfile(path):
        raise MissingFileError(f"the VGG perceptual loss (loss.lambda_vgg > 0) needs "
                               f"loss.vgg_weights (got {path!r}, not a file): {WEIGHTS_HELP}")
    state = torch_files.load_state_dict(path)
    try:
        params = params_from_state_dict(state)
    except KeyError as e:
        raise UserError(f"{path} lacks VGG19's {e.args[0]}.weight/bias: {WEIGHTS_HELP}") from None
    expected = jax.eval_shape(VGG19Features().init, jax.random.PRNGKey(0),
                              jnp.zeros((1, 32, 32, 3)))["params"]
    if jax.tree.map(lambda x: x.shape, expected) != jax.tree.map(np.shape, params):
        raise UserError(f"{path} does not hold VGG19's features (shapes differ): {WEIGHTS_HELP}")
    return jax.tree.map(lambda x: np.asarray(x, np.float32), params)
