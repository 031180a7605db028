"""The config a run was trained (or imported) with, read back from WORKDIR/config.json, so
eval, predict, export and serve need only --workdir: the config travels with the checkpoint."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from typing import Any

import ml_collections
from absl import logging
from etils import epath

from p2p_jax.errors import UserError

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parent.parent / "configs" / "default.py"


def _template() -> ml_collections.ConfigDict:
    """configs/default.py: every key with its type; keys a newer version added keep their
    defaults when an older run's config.json lacks them."""
    spec = importlib.util.spec_from_file_location("p2p_jax_default_config", DEFAULT_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _update(config: ml_collections.ConfigDict, values: dict, prefix: str) -> None:
    for key, value in values.items():
        if key not in config:
            logging.warning("config.json: %s%s is no longer a config key; ignored", prefix, key)
            continue
        if isinstance(config[key], ml_collections.ConfigDict) and isinstance(value, dict):
            _update(config[key], value, f"{prefix}{key}.")
        else:
            config[key] = _tuples(value)


def saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The locked config of the run in `workdir`; a UserError if there is none."""
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise UserError(f"{path} does not exist (no run was trained or imported in "
                        f"{workdir}); give --config=FILE, or check --workdir")
    try:
        values = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise UserError(f"{path} is unreadable ({e}); give --config=FILE") from None
    config = _template()
    try:
        _update(config, values, "")
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: {e}; give --config=FILE") from None
    return config
