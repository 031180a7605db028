"""PyTorch state_dicts of the reference's and pix2pixHD's networks <-> our variables.

`infer_generator` reads the architecture off a generator file's keys and shapes;
`check_config` compares it with the config (one line naming the config key to change);
`to_variables` and `to_state_dict` convert along a `reference_layout` list. Weights are
only ever read through the torch-free, code-free `torch_files` reader, or as `.safetensors`.
"""

from __future__ import annotations

import re
from typing import Any

import ml_collections
import numpy as np
from flax import traverse_util

from p2p_jax.config.sizes import unet_levels
from p2p_jax.errors import UserError
from p2p_jax.interop import safetensors_files, torch_files
from p2p_jax.interop.reference_layout import BATCH_NORM, CONV, CONV_TRANSPOSE, Layer


class ModelFileError(UserError):
    """A weights file that does not fit the config's model; the message says what to change."""


_RUNNING = (".running_mean", ".running_var", ".num_batches_tracked")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """The file's tensors, without a DataParallel `module.` prefix, without batch norms'
    `num_batches_tracked` counters (nothing of ours corresponds to them), and without the
    running statistics that affine-free instance norms of PyTorch < 0.4 saved (the
    reference's test script drops them too: they are never used)."""
    reader = safetensors_files if str(path).endswith(safetensors_files.SUFFIX) else torch_files
    tensors = reader.load_state_dict(path)
    if tensors and all(name.startswith("module.") for name in tensors):
        tensors = {name[len("module."):]: value for name, value in tensors.items()}
    kept = {}
    for name, value in tensors.items():
        module = name.rpartition(".")[0]
        if name.endswith(_RUNNING) and (name.endswith(".num_batches_tracked")
                                        or f"{module}.weight" not in tensors):
            continue
        kept[name] = value
    return kept


def _norm_of(tensors: dict[str, np.ndarray], first_conv: str) -> str:
    """batch: running statistics; instance: biased convolutions (the reference's use_bias);
    none: neither."""
    if any(name.endswith("running_mean") for name in tensors):
        return "batch"
    return "instance" if f"{first_conv}.bias" in tensors else "none"


def _indices(tensors, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for name in tensors if (m := re.match(pattern, name))})


def infer_generator(tensors: dict[str, np.ndarray], path: str) -> dict[str, Any]:
    """The config values a generator file implies: `model.*` keys, plus `channels` (in, out).
    pix2pixHD's convolutions always have biases, so its norm is read as instance unless the
    file has running statistics."""
    if "model.model.0.weight" in tensors:  # UnetGenerator
        depth = max(name.split(".").count("model") for name in tensors) - 2
        num_downs = depth + 1
        name = {7: "unet_128", 8: "unet_256"}.get(num_downs, "unet")
        first, last = tensors["model.model.0.weight"], tensors.get("model.model.3.weight")
        return {"model.generator": name, "model.num_downs": num_downs,
                "model.ngf": first.shape[0], "model.norm": _norm_of(tensors, "model.model.0"),
                "channels": (first.shape[1], None if last is None else last.shape[1])}
    if "model1_1.1.weight" in tensors:  # LocalEnhancer
        n = len(_indices(tensors, r"model(\d+)_1\."))
        found = _global_parts(tensors, path)
        head = tensors["model1_1.1.weight"]
        blocks_local = len(_indices(tensors, rf"model{n}_2\.(\d+)\.conv_block"))
        tail = tensors.get(f"model{n}_2.{blocks_local + 4}.weight")
        return {"model.generator": "local", "model.n_local_enhancers": n,
                "model.ngf": head.shape[0] // 2 ** (n - 1),
                "model.n_downsample_global": found["n_down"],
                "model.n_blocks_global": found["n_blocks"], "model.n_blocks_local": blocks_local,
                "model.norm": found["norm"],
                "channels": (head.shape[1], None if tail is None else tail.shape[0])}
    if "model.1.weight" in tensors and tensors["model.1.weight"].ndim == 4:
        found = _global_parts(tensors, path)
        first = tensors["model.1.weight"]
        tail = tensors.get(f"model.{found['tail']}.weight")
        inferred = {"model.ngf": first.shape[0], "model.norm": found["norm"],
                    "model.n_downsample_global": found["n_down"],
                    "model.n_blocks_global": found["n_blocks"], "dropout": found["dropout"],
                    "channels": (first.shape[1], None if tail is None else tail.shape[0])}
        return {"model.generator": "resnet_or_global", **inferred}
    sample = ", ".join(sorted(tensors)[:3]) or "no tensors"
    raise ModelFileError(f"{path}: not a generator of the reference or pix2pixHD (its keys "
                         f"start {sample}); give a latest_net_G.pth")


def _global_parts(tensors, path: str) -> dict[str, Any]:
    """ResnetGenerator / GlobalGenerator `model.N`: blocks at 4 + 3 n_down .. , the output
    conv 2 after the last of the n_down transposed convs."""
    blocks = _indices(tensors, r"model\.(\d+)\.conv_block\.")
    if not blocks:
        raise ModelFileError(f"{path}: its model.* layers have no residual blocks; not a "
                             "ResNet or pix2pixHD generator")
    n_down = (blocks[0] - 4) // 3
    return {"n_down": n_down, "n_blocks": len(blocks),
            "dropout": any(re.match(r"model\.\d+\.conv_block\.6\.", n) for n in tensors),
            "norm": _norm_of(tensors, "model.1"),
            "tail": blocks[-1] + 1 + 3 * n_down + 1}


def _config_values(config: ml_collections.ConfigDict) -> dict[str, Any]:
    model = config.model
    return {"model.generator": model.generator, "model.ngf": model.ngf, "model.norm": model.norm,
            "model.num_downs": unet_levels(model),
            "model.n_downsample_global": model.n_downsample_global,
            "model.n_blocks_global": model.n_blocks_global,
            "model.n_local_enhancers": model.n_local_enhancers,
            "model.n_blocks_local": model.n_blocks_local}


def _norm_evidence(norm: str) -> str:
    return {"batch": "the file has running_mean", "instance": "the file has no running_mean "
            "and biased convolutions", "none": "the file has no running_mean and no conv "
            "biases"}[norm]


def _mismatch(path: str, key: str, wanted: Any, found: Any, fix: str) -> ModelFileError:
    evidence = _norm_evidence(found) if key == "model.norm" else f"the file has {found}"
    return ModelFileError(f"{path}: {key}={wanted} does not match the file ({evidence}); use "
                          f"{fix}")


def check_config(inferred: dict[str, Any], config: ml_collections.ConfigDict, path: str) -> None:
    """ModelFileError naming the first config key that disagrees with the file."""
    wanted = _config_values(config)
    family, generator = inferred["model.generator"], config.model.generator
    if family.startswith("unet"):
        if not generator.startswith("unet"):
            raise _mismatch(path, "model.generator", generator, "a U-Net",
                            f"--config.model.generator={family}")
        if inferred["model.num_downs"] != wanted["model.num_downs"]:
            fix = (f"--config.model.generator={family}" if family != "unet" else
                   f"--config.model.generator=unet --config.model.num_downs="
                   f"{inferred['model.num_downs']}")
            raise _mismatch(path, "model.num_downs", wanted["model.num_downs"],
                            f"{inferred['model.num_downs']} levels", fix)
        keys = ["model.ngf", "model.norm"]
    elif family == "local":
        if generator != "local":
            raise _mismatch(path, "model.generator", generator, "a pix2pixHD local enhancer",
                            "--config.model.generator=local")
        keys = ["model.n_local_enhancers", "model.n_downsample_global", "model.n_blocks_global",
                "model.n_blocks_local", "model.ngf", "model.norm"]
    elif generator in ("resnet_6blocks", "resnet_9blocks"):
        blocks, n_down = inferred["model.n_blocks_global"], inferred["model.n_downsample_global"]
        if n_down != 2:
            raise _mismatch(path, "model.generator", generator,
                            f"a pix2pixHD global generator with {n_down} downsamplings",
                            "--config.model.generator=global")
        if f"resnet_{blocks}blocks" != generator:
            raise _mismatch(path, "model.generator", generator, f"{blocks} residual blocks",
                            f"--config.model.generator=resnet_{blocks}blocks")
        if inferred["dropout"] != (config.model.dropout > 0):
            raise _mismatch(path, "model.dropout", config.model.dropout,
                            "dropout in its blocks" if inferred["dropout"] else
                            "no dropout in its blocks",
                            f"--config.model.dropout={0.5 if inferred['dropout'] else 0.0}")
        keys = ["model.ngf", "model.norm"]
    elif generator == "global":
        keys = ["model.n_downsample_global", "model.n_blocks_global", "model.ngf", "model.norm"]
    else:
        raise _mismatch(path, "model.generator", generator, "a ResNet / pix2pixHD generator",
                        "--config.model.generator=" + (
                            "resnet_9blocks" if inferred["model.n_downsample_global"] == 2
                            else "global"))
    for key in keys:
        if inferred[key] != wanted[key]:
            raise _mismatch(path, key, wanted[key], inferred[key],
                            f"--config.{key}={inferred[key]}")


# Our kernel (kh, kw, in, out) is the torch weight with its axes in this order: Conv2d's is
# (out, in, kh, kw), ConvTranspose2d's (in, out, kh, kw).
_TORCH_AXES = {CONV: (2, 3, 1, 0), CONV_TRANSPOSE: (2, 3, 0, 1)}


def _torch_shape(kind: str, ours: tuple[int, ...]) -> tuple[int, ...]:
    axes = _TORCH_AXES.get(kind)
    return ours if axes is None else tuple(ours[axes.index(i)] for i in range(len(ours)))


def _from_torch(kind: str, weight: np.ndarray) -> np.ndarray:
    return weight.transpose(_TORCH_AXES[kind]) if kind in _TORCH_AXES else weight


def _to_torch(kind: str, kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(np.argsort(_TORCH_AXES[kind])) if kind in _TORCH_AXES else kernel


def _pairs(layer: Layer, params: dict, stats: dict) -> list[tuple[str, str, tuple]]:
    """(torch key, where ours lives, our shape) for every tensor of a layer; our bias of a
    convolution the torch module lacks is absent here (it is zero)."""
    if layer.kind == BATCH_NORM:
        return [(f"{layer.prefix}.weight", "params/scale", params[(*layer.path, "scale")].shape),
                (f"{layer.prefix}.bias", "params/bias", params[(*layer.path, "bias")].shape),
                (f"{layer.prefix}.running_mean", "stats/mean",
                 stats[(*layer.path, "mean")].shape),
                (f"{layer.prefix}.running_var", "stats/var", stats[(*layer.path, "var")].shape)]
    kernel = params[(*layer.path, "kernel")].shape
    out = [(f"{layer.prefix}.weight", "params/kernel", _torch_shape(layer.kind, kernel))]
    if layer.bias:
        out.append((f"{layer.prefix}.bias", "params/bias", params[(*layer.path, "bias")].shape))
    return out


def to_variables(tensors: dict[str, np.ndarray], layout: list[Layer], params: Any,
                 stats: Any, path: str, hint: str) -> tuple[dict, dict]:
    """Our (params, batch_stats) from the file, shaped like `params`/`stats` (a freshly built
    model's). ModelFileError on the first missing key, differing shape or extra key."""
    flat_params = traverse_util.flatten_dict(params)
    flat_stats = traverse_util.flatten_dict(stats) if stats else {}
    new_params = {key: np.zeros(value.shape, np.float32) for key, value in flat_params.items()}
    new_stats = {key: np.zeros(value.shape, np.float32) for key, value in flat_stats.items()}
    used = set()
    for layer in layout:
        for key, where, shape in _pairs(layer, flat_params, flat_stats):
            if key not in tensors:
                raise ModelFileError(f"{path}: the file has no {key} (our {'/'.join(layer.path)}"
                                     f"); {hint}")
            value = np.asarray(tensors[key], np.float32)
            if tuple(value.shape) != tuple(shape):
                raise ModelFileError(f"{path}: {key} has shape {tuple(value.shape)} in the file, "
                                     f"this config's model needs {tuple(shape)}; {hint}")
            used.add(key)
            group, leaf = where.split("/")
            target = new_params if group == "params" else new_stats
            target[(*layer.path, leaf)] = _from_torch(layer.kind, value) if leaf == "kernel" \
                else value
    extra = sorted(set(tensors) - used)
    if extra:
        raise ModelFileError(f"{path}: the file has {extra[0]}, which this config's model "
                             f"lacks; {hint}")
    return (traverse_util.unflatten_dict(new_params),
            traverse_util.unflatten_dict(new_stats) if new_stats else stats)


def to_state_dict(params: Any, stats: Any, layout: list[Layer]) -> dict[str, np.ndarray]:
    """The torch module's state_dict (keys in module order, batch norms with their
    num_batches_tracked, as `load_state_dict(strict=True)` wants). A bias the torch module
    lacks must be zero here (norm=none models), else ModelFileError."""
    flat_params = traverse_util.flatten_dict(params)
    flat_stats = traverse_util.flatten_dict(stats) if stats else {}
    out = {}
    for layer in layout:
        if layer.kind == BATCH_NORM:
            out[f"{layer.prefix}.weight"] = flat_params[(*layer.path, "scale")]
            out[f"{layer.prefix}.bias"] = flat_params[(*layer.path, "bias")]
            out[f"{layer.prefix}.running_mean"] = flat_stats[(*layer.path, "mean")]
            out[f"{layer.prefix}.running_var"] = flat_stats[(*layer.path, "var")]
            out[f"{layer.prefix}.num_batches_tracked"] = np.zeros((), np.int64)
            continue
        out[f"{layer.prefix}.weight"] = _to_torch(layer.kind,
                                                  flat_params[(*layer.path, "kernel")])
        bias = flat_params.get((*layer.path, "bias"))
        if layer.bias:
            out[f"{layer.prefix}.bias"] = bias
        elif bias is not None and np.any(np.asarray(bias) != 0):
            raise ModelFileError(f"{'/'.join(layer.path)} has a non-zero bias, which the "
                                 "PyTorch definition (model.norm=none) has no place for")
    order = sorted(range(len(out)), key=lambda i: (_module_order(list(out)[i]), i))
    items = list(out.items())
    return {key: np.array(value, np.int64 if key.endswith("tracked") else np.float32, order="C")
            for key, value in (items[i] for i in order)}


def _module_order(key: str) -> tuple:
    """PyTorch's registration order of a key's module: Sequential indices as numbers, so a
    U-Net block's submodule (index 1 or 3) comes before its up-convolution (3 or 5)."""
    module = key.rpartition(".")[0]
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in module.split("."))
