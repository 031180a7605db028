"""The config a run was trained (or imported) with, read back from WORKDIR/config.json, so
eval, predict, export and serve need only --workdir: the config travels with the checkpoint."""

from __future__ import annotations

import json
from typing import Any

import ml_collections
from absl import logging
from etils import epath

from p2p_jax.config import choices, defaults
from p2p_jax.config.checks import validate_config
from p2p_jax.errors import UserError


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
    config = defaults.get_config()  # Keys a newer version added keep their defaults.
    try:
        _update(config, values, "")
        validate_config(config)
    except (TypeError, ValueError, OverflowError) as e:
        raise UserError(f"{path}: {e}; give --config=FILE") from None
    return config


def saved_dataset(workdir: str) -> dict | None:
    """The dataset values of the run in `workdir` as it resolved them from its data (channels,
    pixel types, value ranges); None (the data decides) if it has no config.json, or one that
    cannot say (a run from before pixel types were saved reads as 8-bit photos)."""
    try:
        values = saved_values(workdir)
    except UserError as e:
        logging.warning("%s; the channels come from the data", e)
        return None
    if values is None:
        return None
    dataset = values.get("dataset")
    dataset = dataset if isinstance(dataset, dict) else {}
    try:
        saved = {key: int(dataset[key]) for key in ("input_channels", "output_channels")}
        normalize = dict(dataset.get("normalize") or {})
        for side in ("input", "output"):
            saved[f"{side}_dtype"] = str(dataset.get(f"{side}_dtype") or "uint8")
            low, high = (list(normalize.get(f"{side}_{end}") or []) for end in ("low", "high"))
            if not low:  # Saved before value ranges were: the dtype's.
                low, high = ([v] for v in choices.DTYPE_RANGES[saved[f"{side}_dtype"]])
            normalize[f"{side}_low"], normalize[f"{side}_high"] = low, high
        saved["normalize"] = normalize
    except (KeyError, TypeError, ValueError, AttributeError):
        saved = {}
    if not (saved and saved["input_channels"] and saved["output_channels"]):
        logging.warning("%s/config.json names no channels; they come from the data", workdir)
        return None
    return saved
