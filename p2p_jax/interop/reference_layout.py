"""Where each of our layers sits in the PyTorch state_dicts users already have: the
reference's (junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`) U-Net, ResNet and
PatchGAN networks, and pix2pixHD's (NVIDIA/pix2pixHD `models/networks.py`) GlobalGenerator,
LocalEnhancer and multi-scale discriminator, as `torch.save(net.state_dict())` writes them.

A layout is a list of `Layer`s: our parameter path, the torch module's key prefix, and what
the module is (which says how its weights are laid out). Both directions (import, and the
PyTorch-layout export) read the same list.
"""

from __future__ import annotations

from typing import NamedTuple

import ml_collections

from p2p_jax.config.sizes import unet_levels
from p2p_jax.errors import UserError

CONV, CONV_TRANSPOSE, BATCH_NORM = "conv", "conv_transpose", "batch_norm"


class Layer(NamedTuple):
    path: tuple[str, ...]  # Our module's path in the params (and batch_stats) tree.
    prefix: str  # The torch module's key prefix, e.g. "model.model.1.model.1".
    kind: str  # CONV, CONV_TRANSPOSE or BATCH_NORM.
    bias: bool = True  # Whether the torch module has a bias (convolutions).


class LayoutError(UserError):
    """The config's model has no counterpart in the PyTorch definitions."""


def _norm(norm: str, path: tuple[str, ...], prefix: str) -> list[Layer]:
    """Only batch norm has weights: the references' instance norm is affine-free."""
    return [Layer(path, prefix, BATCH_NORM)] if norm == "batch" else []


def unet(num_downs: int, norm: str) -> list[Layer]:
    """UnetGenerator: nested UnetSkipConnectionBlocks, each a Sequential `model`. Outermost:
    [downconv, submodule, uprelu, upconv, tanh]; innermost: [downrelu, downconv, uprelu,
    upconv, upnorm]; between: [downrelu, downconv, downnorm, submodule, uprelu, upconv,
    upnorm(, dropout)]: dropout comes last, so it shifts no index. Convolutions have biases
    only under instance norm (the reference's use_bias), the outermost upconv always."""
    bias = norm == "instance"
    layers = []
    for level in range(num_downs):
        prefix = "model.model" + (".1.model" if level else "") + ".3.model" * max(level - 1, 0)
        down, up = (f"down_{level}",), (f"up_{level}",)
        if level == 0:
            layers += [Layer(down, f"{prefix}.0", CONV, bias),
                       Layer(up, f"{prefix}.3", CONV_TRANSPOSE, True)]
        elif level == num_downs - 1:
            layers += [Layer(down, f"{prefix}.1", CONV, bias),
                       Layer(up, f"{prefix}.3", CONV_TRANSPOSE, bias),
                       *_norm(norm, (f"up_{level}_norm",), f"{prefix}.4")]
        else:
            layers += [Layer(down, f"{prefix}.1", CONV, bias),
                       *_norm(norm, (f"down_{level}_norm",), f"{prefix}.2"),
                       Layer(up, f"{prefix}.5", CONV_TRANSPOSE, bias),
                       *_norm(norm, (f"up_{level}_norm",), f"{prefix}.6")]
    return layers


def _resnet_block(path: tuple[str, ...], prefix: str, norm: str, dropout: bool,
                  bias: bool) -> list[Layer]:
    """ResnetBlock.conv_block: [pad, conv, norm, relu, (dropout,) pad, conv, norm]: dropout
    shifts the second convolution's index."""
    second = 6 if dropout else 5
    return [Layer((*path, "Conv_0"), f"{prefix}.conv_block.1", CONV, bias),
            *_norm(norm, (*path, "BatchNorm_0"), f"{prefix}.conv_block.2"),
            Layer((*path, "Conv_1"), f"{prefix}.conv_block.{second}", CONV, bias),
            *_norm(norm, (*path, "BatchNorm_1"), f"{prefix}.conv_block.{second + 1}")]


def resnet(num_blocks: int, norm: str, dropout: bool) -> list[Layer]:
    """ResnetGenerator's Sequential `model`: pad, c7s1 (1), norm, relu; two stride-2 convs
    (4, 7); the blocks (10 ..); two transposed convs (10 + n, 13 + n); pad, c7s1 (17 + n)."""
    bias = norm == "instance"
    norms = iter(range(5))
    layers = [Layer(("Conv_0",), "model.1", CONV, bias),
              *_norm(norm, (f"BatchNorm_{next(norms)}",), "model.2")]
    for i, index in enumerate((4, 7)):
        layers += [Layer((f"Conv_{i + 1}",), f"model.{index}", CONV, bias),
                   *_norm(norm, (f"BatchNorm_{next(norms)}",), f"model.{index + 1}")]
    for k in range(num_blocks):
        layers += _resnet_block((f"ResnetBlock_{k}",), f"model.{10 + k}", norm, dropout, bias)
    for i in range(2):
        index = 10 + num_blocks + 3 * i
        layers += [Layer((f"Upsample2x_{i}",), f"model.{index}", CONV_TRANSPOSE, bias),
                   *_norm(norm, (f"BatchNorm_{next(norms)}",), f"model.{index + 1}")]
    return [*layers, Layer(("Conv_3",), f"model.{17 + num_blocks}", CONV, True)]


def global_generator(n_downsampling: int, n_blocks: int, norm: str, final: bool = True,
                     root: tuple[str, ...] = (), prefix: str = "model") -> list[Layer]:
    """pix2pixHD's GlobalGenerator `model`: pad, c7s1 (1), norm, relu; n stride-2 convs
    (4, 7, ..); the blocks; n transposed convs; pad, c7s1 (dropped inside a LocalEnhancer).
    Every convolution has a bias."""
    layers = [Layer((*root, "head"), f"{prefix}.1", CONV),
              *_norm(norm, (*root, "head_norm"), f"{prefix}.2")]
    index = 4
    for i in range(n_downsampling):
        layers += [Layer((*root, f"down_{i}"), f"{prefix}.{index}", CONV),
                   *_norm(norm, (*root, f"down_{i}_norm"), f"{prefix}.{index + 1}")]
        index += 3
    for k in range(n_blocks):
        layers += _resnet_block((*root, f"block_{k}"), f"{prefix}.{index}", norm, False, True)
        index += 1
    for i in range(n_downsampling):
        layers += [Layer((*root, f"up_{i}"), f"{prefix}.{index}", CONV_TRANSPOSE),
                   *_norm(norm, (*root, f"up_{i}_norm"), f"{prefix}.{index + 1}")]
        index += 3
    return [*layers, Layer((*root, "tail"), f"{prefix}.{index + 1}", CONV)] if final else layers


def local_enhancer(n_downsample_global: int, n_blocks_global: int, n_local_enhancers: int,
                   n_blocks_local: int, norm: str) -> list[Layer]:
    """LocalEnhancer: the global generator's layers but the last three as `model`, then per
    enhancer n `model{n}_1` = [pad, c7s1 (1), norm, relu, stride-2 conv (4), norm, relu] and
    `model{n}_2` = [blocks, transposed conv, norm, relu(, pad, c7s1 on the last)]."""
    layers = global_generator(n_downsample_global, n_blocks_global, norm, final=False,
                              root=("global",))
    for n in range(1, n_local_enhancers + 1):
        root, down, up = (f"enhancer_{n}",), f"model{n}_1", f"model{n}_2"
        layers += [Layer((*root, "head"), f"{down}.1", CONV),
                   *_norm(norm, (*root, "head_norm"), f"{down}.2"),
                   Layer((*root, "down"), f"{down}.4", CONV),
                   *_norm(norm, (*root, "down_norm"), f"{down}.5")]
        for k in range(n_blocks_local):
            layers += _resnet_block((*root, f"block_{k}"), f"{up}.{k}", norm, False, True)
        layers += [Layer((*root, "up"), f"{up}.{n_blocks_local}", CONV_TRANSPOSE),
                   *_norm(norm, (*root, "up_norm"), f"{up}.{n_blocks_local + 1}")]
        if n == n_local_enhancers:
            layers.append(Layer((*root, "tail"), f"{up}.{n_blocks_local + 4}", CONV))
    return layers


def n_layer_discriminator(n_layers: int, norm: str) -> list[Layer]:
    """The reference's NLayerDiscriminator `model`: conv (0), lrelu; per layer n = 1 .. n_layers
    conv (3n - 1), norm (3n), lrelu; the logit conv (3 n_layers + 2)."""
    bias = norm == "instance"
    layers = [Layer(("Conv_0",), "model.0", CONV)]
    for n in range(1, n_layers + 1):
        layers += [Layer((f"Conv_{n}",), f"model.{3 * n - 1}", CONV, bias),
                   *_norm(norm, (f"BatchNorm_{n - 1}",), f"model.{3 * n}")]
    return [*layers, Layer((f"Conv_{n_layers + 1}",), f"model.{3 * n_layers + 2}", CONV)]


def multiscale_discriminator(num_d: int, n_layers: int, norm: str) -> list[Layer]:
    """pix2pixHD's MultiscaleDiscriminator with getIntermFeat: `scale{k}_layer{j}`
    Sequentials: [conv, lrelu], then [conv, norm, lrelu] per layer, then [conv]."""
    layers = []
    for k in range(num_d):
        for j in range(n_layers + 2):
            path, prefix = (f"scale_{k}", f"layer_{j}"), f"scale{k}_layer{j}"
            layers.append(Layer(path, f"{prefix}.0", CONV))
            if 0 < j <= n_layers:
                layers += _norm(norm, (f"scale_{k}", f"layer_{j}_norm"), f"{prefix}.1")
    return layers


def generator_layout(config: ml_collections.ConfigDict) -> list[Layer]:
    """The layout of the config's generator; LayoutError for the ones PyTorch has no
    definition of (resize upsampling, other U-Net depths are fine)."""
    model = config.model
    if model.upsample != "conv_transpose":
        raise LayoutError(f"model.upsample={model.upsample!r} has no counterpart in the "
                          "PyTorch definitions; use model.upsample=conv_transpose")
    name = model.generator
    if name.startswith("unet"):
        return unet(unet_levels(model), model.norm)
    if name in ("resnet_6blocks", "resnet_9blocks"):
        return resnet(int(name.split("_")[1][0]), model.norm, model.dropout > 0)
    if name == "global":
        return global_generator(model.n_downsample_global, model.n_blocks_global, model.norm)
    if name == "local":
        return local_enhancer(model.n_downsample_global, model.n_blocks_global,
                              model.n_local_enhancers, model.n_blocks_local, model.norm)
    raise LayoutError(f"model.generator={name!r} has no PyTorch layout")


def discriminator_layout(config: ml_collections.ConfigDict) -> list[Layer]:
    model = config.model
    if model.discriminator == "basic":
        return n_layer_discriminator(3, model.norm)
    if model.discriminator == "n_layers":
        return n_layer_discriminator(model.n_layers_d, model.norm)
    if model.discriminator == "multiscale":
        return multiscale_discriminator(model.num_d, model.n_layers_d, model.norm)
    raise LayoutError(f"model.discriminator={model.discriminator!r} cannot be imported; "
                      "leave out --input_d (a fresh discriminator is initialised)")
