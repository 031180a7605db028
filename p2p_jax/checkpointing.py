"""Orbax checkpoints of the train state together with the Grain iterator state.

Each checkpoint `WORKDIR/checkpoints/<step>/` holds `state/`, `data/` and `layout/` (who wrote
it, and a checksum of every array); Orbax writes to a temporary folder and renames it on
commit, so an interrupted save is never restored, and every restore checks the arrays it read
against their checksums, so altered files are a damaged checkpoint, never weights used
silently.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from p2p_jax.config.choices import LOWER_IS_BETTER
from p2p_jax.errors import UserError

# Every periodic eval's means by step, written by training beside its checkpoints, for what
# reads a run without TensorBoard (the model card of an export).
PERIODIC_EVALS = "eval/periodic.json"


# `--step=best`: the best-scoring checkpoint of `checkpoint.best_metric`.
BEST = "best"


def checkpoint_dir(workdir: str, name: str = "checkpoints") -> epath.Path:
    """`WORKDIR/checkpoints` (or another folder `name` of the workdir), local or gs://."""
    path = epath.Path(workdir)
    return (path if "://" in str(workdir) else path.absolute()) / name


def best_checkpoint_dir(workdir: str) -> epath.Path:
    return checkpoint_dir(workdir, "checkpoints_best")


def _item_handlers(partial: bool = False) -> dict[str, ocp.CheckpointHandler]:
    """Every item of a checkpoint, so its metadata reads without guessing (and without
    Orbax's warnings about items it cannot restore). `partial`: the state through the PyTree
    handler (the same files), which can restore a subtree of it."""
    state = ocp.PyTreeCheckpointHandler() if partial else ocp.StandardCheckpointHandler()
    return {"state": state, "data": grain.checkpoint.CheckpointHandler(),
            "layout": ocp.JsonCheckpointHandler()}


def create_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.checkpoint.max_to_keep,
        enable_async_checkpointing=config.checkpoint.async_save,
        create=True,
        cleanup_tmp_directories=True,  # Saves a killed run left unfinished: never restorable.
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                                 item_handlers=_item_handlers())


def _as_words(x: jax.Array) -> jax.Array:
    """The array's bits as uint32 words (2-byte and 1-byte types widened, 8-byte ones split)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    size = x.dtype.itemsize
    if size == 1:
        return x.astype(jnp.uint32)
    if size == 2:
        return jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


@jax.jit
def _checksums(state: Any) -> Any:
    """Per array: the sum of its words times odd position weights, mod 2**32. Any change of a
    single word changes it (odd numbers are invertible mod 2**32), and integer sums give the
    same value on any mesh, sharding or process count."""
    def one(x):
        words = _as_words(x)
        # Row-major positions from iotas of the array's own shape, not a reshape: a sharded
        # (FSDP) array is summed where its shards are, never gathered.
        position, stride = jnp.zeros(words.shape, jnp.uint32), 1
        for axis in reversed(range(words.ndim)):
            position += jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * jnp.uint32(
                stride % 2**32)
            stride *= words.shape[axis]
        return jnp.sum(words * (position * jnp.uint32(2) + jnp.uint32(1)), dtype=jnp.uint32)

    return jax.tree.map(one, state)


def checksums(state: Any) -> dict[str, int]:
    """{array name: checksum} of a state, computed where the arrays are (a few small copies)."""
    sums = _checksums(state)
    with jax.transfer_guard_device_to_host("allow"):  # Saves run inside the loop's guard.
        flat = jax.tree_util.tree_flatten_with_path(jax.device_get(sums))[0]
    return {leaf_name(path): int(value) for path, value in flat}


def verify(state: Any, layout: dict, step: int) -> None:
    """Raises CheckpointError naming the first array whose restored bits differ from the
    checksum saved with it. Checkpoints written before checksums existed pass."""
    saved = layout.get("checksums")
    if saved is None:
        return
    for name, value in checksums(state).items():
        if saved.get(name) != value:
            raise CheckpointError(f"checkpoint at step {step}: {name} does not match the "
                                  "checksum saved with it (its files were altered or damaged "
                                  "after the save)")


def _layout(state: Any, **fields) -> ocp.args.JsonSave:
    return ocp.args.JsonSave({"process_count": jax.process_count(),
                              "checksums": checksums(state), **fields})


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         data_iterator: grain.DatasetIterator | None, metrics: dict | None = None) -> None:
    """Starts an (async) save; `wait` makes it durable. Errors of an earlier async save (disk
    full, permissions) surface here or in `wait` as one clear error. `data_iterator` None: no
    data position (a best checkpoint, for inference); `metrics`: what a best checkpoint
    scored."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is None:
        items["layout"] = _layout(state, data=False)
    else:
        items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        items["layout"] = _layout(state)
    try:
        manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    except Exception as e:
        raise _save_error(manager, step, e) from e


def best_mode(checkpoint: ml_collections.ConfigDict) -> str:
    """min or max: `checkpoint.best_mode`, or for "auto" by what the metric measures."""
    if checkpoint.best_mode != "auto":
        return checkpoint.best_mode
    return "min" if checkpoint.best_metric.removeprefix("eval/") in LOWER_IS_BETTER else "max"


def _best_options(checkpoint: ml_collections.ConfigDict, **options
                  ) -> ocp.CheckpointManagerOptions:
    name = checkpoint.best_metric
    return ocp.CheckpointManagerOptions(
        best_fn=lambda metrics: metrics[name], best_mode=best_mode(checkpoint),
        keep_checkpoints_without_metrics=False, **options)


class BestCheckpoints:
    """The `checkpoint.keep_best` checkpoints that scored best on `checkpoint.best_metric` at
    the periodic evaluations, in WORKDIR/checkpoints_best/ beside the latest ones. Only a
    score that enters them is written. Saved without a data position: they are for inference
    (--step=best) and `model.init_from`, not for resuming."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, start_step: int):
        checkpoint = config.checkpoint
        self.metric, self._keep = checkpoint.best_metric, checkpoint.keep_best
        self._lower = best_mode(checkpoint) == "min"
        self.manager = ocp.CheckpointManager(
            best_checkpoint_dir(workdir), item_handlers=_item_handlers(),
            options=_best_options(checkpoint, max_to_keep=checkpoint.keep_best, create=True,
                                  cleanup_tmp_directories=True,
                                  enable_async_checkpointing=checkpoint.async_save))
        for step in self.manager.all_steps():  # A resume redoes the steps after its own.
            if step > start_step:
                self.manager.delete(step)
        # The kept scores, here as well as in Orbax's metadata (which an async save writes
        # only when it commits).
        self._scores = {step: float(self.manager.metrics(step)[self.metric])
                        for step in self.manager.all_steps()}

    def offer(self, step: int, state: Any, results: dict[str, float]) -> None:
        """Saves `state` if its score enters the best; logs when it is the best so far."""
        value = results.get(self.metric.removeprefix("eval/"))
        if value is None or not np.isfinite(value):
            return
        value = float(value)
        ranked = sorted(self._scores.values(), reverse=not self._lower)  # Best first.
        if len(ranked) >= self._keep and not self._better(value, ranked[-1]):
            return
        save(self.manager, step, state, None, metrics={self.metric: value})
        self._scores[step] = value  # Orbax removes the one it displaces; so do we.
        if len(self._scores) > self._keep:
            worst = sorted(self._scores, key=self._scores.get, reverse=self._lower)[0]
            del self._scores[worst]
        if not ranked or self._better(value, ranked[0]):
            logging.info("best checkpoint so far: step %d (%s %.4g)", step, self.metric, value)

    def _better(self, a: float, b: float) -> bool:
        return a < b if self._lower else a > b

    def close(self) -> None:
        wait(self.manager)
        self.manager.close()


def save_without_data(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
    """A checkpoint with no data position (imported weights), written before returning:
    training from it starts the data stream at its step, as a resume by another process count
    does."""
    save(manager, step, state, None)
    wait(manager)


def wait(manager: ocp.CheckpointManager) -> None:
    try:
        manager.wait_until_finished()
    except Exception as e:
        raise _save_error(manager, None, e) from e


class CheckpointSaveError(UserError):
    """A save that could not be written (a full disk, permissions): one line, the earlier
    checkpoints intact and the unfinished one removed. TensorStore's writes still in flight
    would print hundreds of tracebacks at shutdown: the process exits at once."""

    abandons_threads = True


def _save_error(manager: ocp.CheckpointManager, step: int | None,
                e: Exception) -> CheckpointSaveError:
    """The error of a failed save, after removing what it left (an async save's error surfaces
    at the next save or wait: the unfinished folders name its step)."""
    unfinished = sorted(epath.Path(manager.directory).glob("*.orbax-checkpoint-tmp*"))
    steps = sorted({p.name.split(".")[0] for p in unfinished})
    if jax.process_index() == 0:
        for path in unfinished:
            path.rmtree() if path.is_dir() else path.unlink()
    what = (f"checkpoint save at step {', '.join(steps)}" if steps else
            f"checkpoint save at step {step}" if step is not None else "a checkpoint save")
    text = " ".join(str(e).split())
    reason = ("no space left on device" if "No space left" in text or "os_error_code='28'"
              in text else f"{type(e).__name__}: {text[:300]}")
    return CheckpointSaveError(
        f"{what} under {manager.directory} failed ({reason}); its unfinished files are "
        f"removed and earlier checkpoints are intact (steps {manager.all_steps()}); free disk "
        "space and rerun to resume from the latest")


class CheckpointError(UserError):
    """A workdir whose checkpoints cannot serve this run; the message says why and what to do."""


def leaf_name(path) -> str:
    """'g_params/down_0/kernel' for a pytree path (checkpoint metadata and states alike)."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)


def check_compatible(manager: ocp.CheckpointManager, step: int, target_state: Any,
                     partial: bool = False) -> None:
    """Raises CheckpointError naming the first array whose saved shape differs from this
    config's (another architecture, width or channel count), before Orbax tries to restore.
    A checkpoint whose metadata cannot be read is left to the restore (damaged files).
    `partial`: the target is part of the saved state (arrays beyond it are not compared)."""
    try:
        saved = manager.item_metadata(step)["state"]
        saved = {leaf_name(p): tuple(m.shape)
                 for p, m in jax.tree_util.tree_flatten_with_path(saved)[0]}
    except Exception:  # Damaged metadata: the restore reports it in its own way.
        return
    if not saved:
        return
    wanted = {leaf_name(p): tuple(x.shape)
              for p, x in jax.tree_util.tree_flatten_with_path(target_state)[0]}
    where = f"the checkpoint at step {step} in {manager.directory}"
    help_ = ("it was trained with another model config: use that run's config (its "
             "config.json), or a new --workdir for this one")
    for name, shape in wanted.items():
        if name not in saved:
            raise CheckpointError(f"{where} has no {name} (this config has {shape}); {help_}")
        if saved[name] != shape:
            raise CheckpointError(f"{where} holds {name} of shape {saved[name]}, this config "
                                  f"one of {shape}; {help_}")
    extra = sorted(set(saved) - set(wanted))
    if extra and not partial:
        raise CheckpointError(f"{where} holds {extra[0]}, which this config lacks; {help_}")


def _as_saved(manager: ocp.CheckpointManager, step: int, abstract: Any) -> Any:
    """`abstract` (a train state) as the checkpoint at `step` holds it: the fields added to
    the train state since that checkpoint was written (the moving average), empty in this
    run, are left out (a dict of the others), so older workdirs still resume."""
    if not dataclasses.is_dataclass(abstract):
        return abstract
    try:
        saved = manager.item_metadata(step)["state"]
    except Exception:  # Damaged metadata: the restore reports it in its own way.
        return abstract
    fields = {field.name: getattr(abstract, field.name)
              for field in dataclasses.fields(abstract)}
    kept = {name: value for name, value in fields.items()
            if name in saved or jax.tree.leaves(value)}
    return abstract if len(kept) == len(fields) else kept


def restore(manager: ocp.CheckpointManager, step: int, target_state: Any,
            data_iterator: grain.DatasetIterator) -> tuple[Any, bool]:
    """Restores `step` onto the shardings of `target_state` (any mesh shape).

    Returns (state, whether the iterator was restored in place). Grain's iterator state is per
    process, so it is restored only when the process count is the one that saved it; otherwise
    the caller repositions the data stream from the step.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    layout = manager.restore(step, args=ocp.args.Composite(layout=ocp.args.JsonRestore())).layout
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_as_saved(manager, step, abstract)))).state
    if isinstance(state, dict):
        state = abstract.replace(**state)
    verify(state, layout, step)
    if not layout.get("data", True):
        logging.info("checkpoint at step %d has no data position (imported weights): the data "
                     "stream starts at that step", step)
        return state, False
    if layout["process_count"] != jax.process_count():
        logging.warning("checkpoint at step %d was written by %d processes, this run has %d: the "
                        "data position is recomputed from the step", step,
                        layout["process_count"], jax.process_count())
        return state, False
    try:  # Apart from the weights: damage to the data position alone spares them.
        manager.restore(step, args=ocp.args.Composite(
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
    except Exception as e:  # Grain and Orbax raise many types for damaged files.
        logging.warning("checkpoint at step %d: its data position is unreadable (%s: %s); the "
                        "weights are intact and the data stream is repositioned from the step",
                        step, type(e).__name__, " ".join(str(e).split())[:200])
        return state, False
    return state, True


def restore_latest(manager: ocp.CheckpointManager, target_state: Any,
                   data_iterator: grain.DatasetIterator) -> tuple[Any, int, bool] | None:
    """Restores the newest readable checkpoint: (state, step, iterator restored); None if there
    is none.

    A newest checkpoint damaged by hand (files deleted or truncated) is moved to
    `checkpoints_unreadable/` with a clear message, and the previous one is used. If no
    checkpoint can be restored (e.g. the model config changed), nothing is moved and the
    error says so.
    """
    failures = []
    steps = sorted(manager.all_steps(), reverse=True)
    if steps:
        check_compatible(manager, steps[0], target_state)
    for step in steps:
        try:
            state, data_restored = restore(manager, step, target_state, data_iterator)
        except Exception as e:  # Orbax raises many types for damaged files.
            logging.error("checkpoint at step %d is unreadable: %s: %s", step, type(e).__name__, e)
            failures.append((step, e))
            continue
        for bad_step, error in failures:
            _set_aside(manager, bad_step, error)
        if failures:
            manager.reload()
        return state, step, data_restored
    if failures:
        step, error = failures[0]
        raise CheckpointError(
            f"no checkpoint in {manager.directory} can be restored (newest, step {step}: "
            f"{type(error).__name__}: {error}); if the model config changed, use a new workdir")
    return None


def _set_aside(manager: ocp.CheckpointManager, step: int, error: Exception) -> None:
    """Moves the step to checkpoints_unreadable/<step> (<step>.2, .3... when an earlier damaged
    copy of that step is already there: a run that re-saved the step and was damaged again)."""
    source = epath.Path(manager.directory) / str(step)
    aside = epath.Path(manager.directory).parent / "checkpoints_unreadable"
    target = aside / str(step)
    copy = 1
    while target.exists():
        copy += 1
        target = aside / f"{step}.{copy}"
    if jax.process_index() == 0 and source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
    logging.warning("checkpoint at step %d is damaged (%s); moved to %s and resumed from the "
                    "previous one", step, type(error).__name__, target)


def _read_only_manager(workdir: str, partial: bool = False,
                       best_of: ml_collections.ConfigDict | None = None
                       ) -> ocp.CheckpointManager:
    """The workdir's checkpoints, or with `best_of` (the run's checkpoint config) its best
    ones ranked by their scores."""
    options = dict(read_only=True, create=False, save_interval_steps=0)
    if best_of is None:
        return ocp.CheckpointManager(checkpoint_dir(workdir),
                                     options=ocp.CheckpointManagerOptions(**options),
                                     item_handlers=_item_handlers(partial))
    if not best_of.best_metric:
        raise CheckpointError(f"--step=best: the run in {workdir} kept no best checkpoints "
                              "(its checkpoint.best_metric is empty); pick a step instead")
    return ocp.CheckpointManager(best_checkpoint_dir(workdir),
                                 options=_best_options(best_of, **options),
                                 item_handlers=_item_handlers(partial))


def _chosen_step(manager: ocp.CheckpointManager, step: int | str | None) -> int:
    steps = manager.all_steps()
    if not steps:
        raise CheckpointError(f"no checkpoint in {manager.directory}; train first, or check "
                              "--workdir")
    if step == BEST:
        return manager.best_step()
    if step is None:
        return max(steps)
    if step not in steps:
        raise CheckpointError(f"no checkpoint for step {step} in {manager.directory}; "
                              f"available: {sorted(steps)}")
    return step


def restore_generator(workdir: str, target: dict[str, Any], step: int | str | None = None,
                      checkpoint_config: ml_collections.ConfigDict | None = None
                      ) -> tuple[dict[str, Any], int]:
    """The generator's part of the saved train state alone (`target`: {"g_params": ...,
    "g_batch_stats": ...}, or the moving average's names, as shapes with shardings), at `step`
    (default: latest; BEST: the best-scoring one of the run's `checkpoint_config`); the
    discriminator and the optimizer moments stay on disk. (variables, step)."""
    best_of = checkpoint_config if step == BEST else None
    with _read_only_manager(workdir, partial=True, best_of=best_of) as manager:
        step = _chosen_step(manager, step)
        for name in target:  # One at a time: the kernels' shapes tell the most.
            check_compatible(manager, step, {name: target[name]}, partial=True)
        variables = _restore_checked(manager, step, target, partial=True)
    return variables, step


def _restore_checked(manager: ocp.CheckpointManager, step: int, abstract: Any,
                     partial: bool = False) -> Any:
    """The state at `step` (`partial`: the part of it `abstract` names), verified; a damaged
    checkpoint is one CheckpointError naming it and the other steps to pick with --step."""
    state_args = (ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True) if partial else ocp.args.StandardRestore(abstract))
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=state_args, layout=ocp.args.JsonRestore()))
        verify(restored.state, restored.layout, step)
    except Exception as e:  # Orbax and TensorStore raise many types for damaged files.
        others = sorted(set(manager.all_steps()) - {step})
        reason = e if isinstance(e, CheckpointError) else (
            f"checkpoint at step {step} is unreadable ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]})")
        raise CheckpointError(f"{reason}; in {manager.directory}"
                              + (f": pick another with --step (available: {others})"
                                 if others else "")) from None
    return restored.state


def load_train_state(workdir: str, step: int | None = None) -> dict[str, Any]:
    """The saved train state as NumPy pytrees (latest step by default), for notebooks and tests.

    Works whatever mesh or number of processes wrote the checkpoint.
    """
    with _read_only_manager(workdir) as manager:
        step = _chosen_step(manager, step)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                manager.item_metadata(step)["state"])
        state = _restore_checked(manager, step, abstract)
    return jax.tree.map(np.asarray, state)
