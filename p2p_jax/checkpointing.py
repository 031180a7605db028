"""Orbax checkpoints of the train state together with the Grain iterator state.

Each checkpoint `WORKDIR/checkpoints/<step>/` holds `state/` and `data/`; Orbax writes to a
temporary folder and renames it on commit, so an interrupted save is never restored.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def create_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.checkpoint.max_to_keep,
        enable_async_checkpointing=config.checkpoint.async_save,
        create=True,
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         data_iterator: grain.DatasetIterator) -> None:
    """Starts an (async) save; `manager.wait_until_finished()` makes it durable."""
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)


def restore(manager: ocp.CheckpointManager, step: int, target_state: Any,
            data_iterator: grain.DatasetIterator) -> Any:
    """Restores `step` onto the shardings of `target_state`; the iterator is set in place."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return restored.state


def load_train_state(workdir: str, step: int | None = None) -> dict[str, Any]:
    """The saved train state as NumPy pytrees (latest step by default), for notebooks and tests."""
    with ocp.CheckpointManager(checkpoint_dir(workdir),
                               options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)}")
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return jax.tree.map(np.asarray, restored.state)
