"""`model.init_from`: a new run starts from another run's weights, as pix2pixHD's
--load_pretrain starts the 2048x1024 local enhancer from the 1024x512 global generator.

Every array of the new state whose counterpart in the other run's checkpoint has the same
path and shape is taken from it: a `local` generator's coarse branch ('global/...') reads a
`global` run's generator (its last conv, 'tail', has no counterpart), and discriminator scales
are matched by name (pix2pixHD's scale_<k> sees the same resolution in both stages). The rest
stays freshly initialised, and the log says how much of each network was taken. Optimizer
states always start fresh. A resumed run never reads init_from: its own checkpoint wins.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections
from absl import logging
from etils import epath

from p2p_jax import checkpointing, parallel
from p2p_jax.errors import UserError
from p2p_jax.train.state import TrainState

PARTS = ("g_params", "g_batch_stats", "d_params", "d_batch_stats")


def _flat(tree: Any) -> dict[str, Any]:
    return {checkpointing.leaf_name(path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _source_generator(workdir: str) -> str:
    saved = epath.Path(workdir) / "config.json"
    return json.loads(saved.read_text())["model"]["generator"] if saved.exists() else ""


def warm_start(state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    """`state` with the arrays `config.model.init_from` ("WORKDIR" or "WORKDIR:STEP") has."""
    workdir, _, step = config.model.init_from.partition(":")
    try:
        source = checkpointing.load_train_state(workdir, int(step) if step else None)
    except ValueError:
        raise UserError(f"model.init_from={config.model.init_from!r}: STEP must be a "
                        "number") from None
    into_local = (config.model.generator == "local" and _source_generator(workdir) == "global")
    replaced, taken_counts, summary = {}, {}, []
    for part in PARTS:
        available = _flat(source[part])
        taken = 0
        target = getattr(state, part)
        flat_target = jax.tree_util.tree_flatten_with_path(target)
        leaves = []
        for path, leaf in flat_target[0]:
            name = checkpointing.leaf_name(path)
            if into_local and part.startswith("g_") and name.startswith("global/"):
                name = name[len("global/"):]
            value = available.get(name)
            if value is not None and tuple(value.shape) == tuple(leaf.shape):
                leaves.append(parallel.placed_like(value, leaf))
                taken += 1
            else:
                leaves.append(leaf)
        replaced[part] = jax.tree_util.tree_unflatten(flat_target[1], leaves)
        taken_counts[part] = taken
        summary.append(f"{part} {taken}/{len(leaves)}")
    if not taken_counts["g_params"]:
        raise UserError(f"model.init_from={config.model.init_from!r}: no generator parameter "
                        "there matches this model (shapes or names differ); check the "
                        "generator settings of both runs")
    logging.info("initialised from %s (step %d): arrays taken %s; the rest fresh",
                 workdir, int(source["step"]), ", ".join(summary))
    state = state.replace(**replaced)
    return state.with_generator(state.g_params, state.g_batch_stats)
