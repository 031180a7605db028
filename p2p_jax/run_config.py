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

from p2p_jax import config_checks
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
        if isinstance(config[key], ml_collections.ConfigDict):
            if not isinstance(value, dict):
                raise TypeError(f"{prefix}{key} must be an object, not {value!r:.80}")
            _update(config[key], value, f"{prefix}{key}.")
        elif value is None and config[key] is not None:
            raise TypeError(f"{prefix}{key} is null; it takes a {type(config[key]).__name__}")
        else:
            config[key] = _tuples(value)


def saved_values(workdir: str) -> dict | None:
    """WORKDIR/config.json as parsed JSON; None if there is none, a UserError naming the file
    if it is not a JSON object (truncated, hand-edited, or nested past Python's recursion)."""
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        return None
    try:
        values = json.loads(path.read_text())
    except (ValueError, OSError, RecursionError) as e:
        raise UserError(f"{path} is unreadable ({type(e).__name__}: {str(e)[:200]}); give "
                        "--config=FILE") from None
    if not isinstance(values, dict):
        raise UserError(f"{path} holds a JSON {type(values).__name__}, not the object of a "
                        "run's config; give --config=FILE")
    return values


def saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The locked config of the run in `workdir`, checked as a config file is; a UserError
    naming the file if there is none or it does not make a valid config."""
    path = epath.Path(workdir) / "config.json"
    values = saved_values(workdir)
    if values is None:
        raise UserError(f"{path} does not exist (no run was trained or imported in "
                        f"{workdir}); give --config=FILE, or check --workdir")
    config = _template()
    try:
        _update(config, values, "")
        config_checks.validate_config(config)
    except (TypeError, ValueError, OverflowError) as e:
        raise UserError(f"{path}: {e}; give --config=FILE") from None
    return config
