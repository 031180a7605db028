"""The shipped task configs by name: `--config=facades` or `--config=cityscapes_hd:local` from
any directory, whether the package runs from a checkout (the repository's `configs/`) or from
an installed wheel (the same files mapped to `p2p_jax/configs/`)."""

from __future__ import annotations

import importlib.util
import pathlib
import types

import p2p_jax
from p2p_jax.errors import UserError


def config_folder() -> pathlib.Path:
    """p2p_jax/configs in a wheel; the checkout's configs/ beside the package otherwise."""
    package = pathlib.Path(p2p_jax.__file__).parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def names() -> list[str]:
    return sorted(p.stem for p in config_folder().glob("*.py") if not p.stem.startswith("_"))


def is_name(argument: str) -> bool:
    """A bare name (no folder, no .py) names a shipped config; anything else is a path."""
    path = argument.partition(":")[0]
    return bool(path) and "/" not in path and "\\" not in path and not path.endswith(".py")


def resolve(argument: str) -> str:
    """`NAME[:variant]` -> the shipped file's path[:variant]; a path is returned unchanged."""
    if not is_name(argument):
        return argument
    name, colon, variant = argument.partition(":")
    path = config_folder() / f"{name}.py"
    if not path.is_file():
        raise UserError(f"--config={argument}: no shipped config {name!r}; the shipped ones are "
                        f"{', '.join(names())} (or give a file path, e.g. ./my_config.py)")
    return f"{path}{colon}{variant}"


def sibling(config_file: str, name: str) -> types.ModuleType:
    """The config `name`.py from the folder of `config_file` (a config's own `__file__`), so a
    config that extends another works as a file path, by name, and from a copied folder."""
    path = pathlib.Path(config_file).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"p2p_jax_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
