"""The training loop: resume, compile once, step, and the periodic actions (log, samples,
evaluation, checkpoints), until the last step or a preemption notice."""

from __future__ import annotations

import json
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import parameter_overview
from etils import epath

from p2p_jax import checkpointing, fileio, parallel, preemption
from p2p_jax.data import images, pipeline
from p2p_jax.eval import evaluators, grids, scoring, summaries
from p2p_jax.models.generation import EVAL_SEED_OFFSET, SAMPLE_SEED_OFFSET, host_key
from p2p_jax.models.translate import Translator
from p2p_jax.train import faults, monitor, warm_start
from p2p_jax.train import progress as train_progress
from p2p_jax.train import state as train_state
from p2p_jax.train import step as train_step


class _Samples:
    """Fixed eval examples rendered as (input | generated | target) grids."""

    def __init__(self, config, translator: Translator, workdir: str, writer):
        self._examples = pipeline.eval_examples(config, config.num_sample_images)
        self._translator, self._writer = translator, writer
        self._dir = epath.Path(workdir) / "samples"
        self._key = host_key(config.seed + SAMPLE_SEED_OFFSET)
        self._dataset, self._chosen = config.dataset, tuple(config.eval.preview_channels)

    def __call__(self, step: int, state: train_state.TrainState) -> None:
        outputs, _ = self._translator.generate(state.generator_variables(), self._examples,
                                               self._key)
        shown, outputs = grids.previews(self._examples, outputs, self._dataset, self._chosen)
        grid = grids.triptych_grid([e["A"] for e in shown], outputs, [e["B"] for e in shown])
        self._writer.write_images(step, {"samples/input_generated_target": grid[None]})
        if jax.process_index() == 0:
            images.write(self._dir / f"step_{step:08d}.png", grid)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       devices: list[jax.Device] | None = None) -> train_state.TrainState:
    """Trains to `config.num_train_steps` on `devices` (default: every device of every
    process), resuming from the latest checkpoint in `workdir`."""
    setup = train_state.build(config, devices=devices)
    config, mesh = setup.config, setup.mesh
    used = list(mesh.devices.flat)
    if jax.process_count() > 1:
        logging.info("process %d/%d: %d local of %d devices (%s)", jax.process_index(),
                     jax.process_count(),
                     sum(d.process_index == jax.process_index() for d in used), len(used),
                     used[0].device_kind)
    else:
        logging.info("%d %s device%s, global batch %d", len(used), used[0].device_kind,
                     "s" if len(used) > 1 else "", config.batch_size)
    if len(used) > 1:
        logging.info("%s", train_step.describe_mesh(setup.recipe, mesh))
    # Everything that can fail on the user's input (evaluator weights, data) before anything
    # is written into the workdir.
    extra_evaluators = evaluators.build(config.eval, mesh)  # Loads their networks now.
    train_iter = pipeline.create_train_iterator(config)
    # One run per workdir; process 0 holds the lock for the processes of its run.
    with fileio.workdir_lock(workdir, holder=jax.process_index() == 0):
        manager = checkpointing.create_manager(workdir, config)
        # Installed before restore and compilation, so a SIGTERM during start-up still saves.
        watcher = preemption.PreemptionWatcher(manager)
        try:
            return _resume_and_train(setup, workdir, train_iter, manager, watcher,
                                     extra_evaluators)
        finally:
            watcher.close()
            manager.close()


def _compile(setup: train_state.Setup, state, spec):
    return train_step.compile_train_step(setup.recipe, state, spec, setup.mesh, setup.frozen,
                                         memory_limit_gb=setup.config.mesh.memory_limit_gb)


def _abstract(tree):
    """Shapes, dtypes and shardings only (what compiling needs; the arrays may be donated)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        tree)


def _resume_and_train(setup, workdir, train_iter, manager, watcher, extra_evaluators):
    """Restores the latest checkpoint if any, compiles the step and runs the loop."""
    config, mesh, state = setup.config, setup.mesh, setup.state
    is_chief = jax.process_index() == 0
    restored = checkpointing.restore_latest(manager, state, train_iter)
    if restored is not None:
        state, restored_step, data_restored = restored
        if not data_restored:
            train_iter = pipeline.create_train_iterator(config, start_batch=restored_step)
        logging.info("resumed from checkpoint at step %d", restored_step)
    elif config.model.init_from:
        state = warm_start.warm_start(state, config)
    # Only now that the checkpoint (if any) fits this config: a refused resume leaves the
    # workdir's config.json describing its checkpoints. Before the first save, so a checkpoint
    # is never there without its config.
    if is_chief:
        fileio.write_text(epath.Path(workdir) / "config.json", config.to_json_best_effort(indent=2))
    start_step = int(jax.device_get(state.step))

    # Scalars and samples to TensorBoard (and W&B) from process 0; the progress report shows
    # the main ones, --verbosity=1 logs them all.
    writers = [summaries.create_writer(workdir)] if is_chief else []
    if is_chief and config.wandb.enabled:
        from p2p_jax.train import wandb_writer  # The optional extra: only when wanted.

        writers.append(wandb_writer.WandbWriter(config.wandb, workdir))
    writer = summaries.Writers(writers)
    if start_step == 0:
        model = config.model
        for name, kind, params in (("generator", model.generator, state.g_params),
                                   ("discriminator", model.discriminator, state.d_params)):
            logging.info("%s %s: %s parameters", name, kind,
                         f"{parameter_overview.count_parameters(params):,}")
            if logging.vlog_is_on(1):
                parameter_overview.log_parameter_overview(params)
        writer.write_hparams(_flatten(config))

    compile_start = time.perf_counter()
    compiled = _compile(setup, state, train_state.batch_spec(config, mesh))
    compile_s = time.perf_counter() - compile_start
    logging.info("train step compiled in %.1f s", compile_s)
    # Processes compile at different speeds; the first collective's connection set-up (gloo on
    # CPU) times out after 30 s, so every process starts stepping together.
    parallel.sync_processes("train_step_compiled")
    writer.write_scalars(start_step, {"train/compile_s": compile_s})
    step_fn = faults.with_nonfinite_steps(
        compiled, tuple(config.debug.nonfinite_steps),
        lambda bad_batch: _compile(setup, _abstract(state), _abstract(bad_batch)))

    # One translator for samples and evaluation: the same programs, compiled once.
    translator = scoring.scoring_translator(setup.recipe.generator, mesh, config)
    eval_examples = pipeline.eval_examples(config, config.eval.num_examples)
    samples = _Samples(config, translator, workdir, writer)
    shown = train_progress.TrainingProgress(start_step, config.num_train_steps, is_chief)
    eval_key = host_key(config.seed + EVAL_SEED_OFFSET)
    eval_history = _eval_history(workdir, start_step) if is_chief else None
    best = (checkpointing.BestCheckpoints(workdir, config, start_step)
            if config.checkpoint.best_metric else None)
    watch = monitor.InstabilityWatch.from_config(config)

    pending, last_log_step, last_log_time = [], start_step, time.perf_counter()
    files_skipped = 0  # Bad input files passed over since this process started.
    try:
        with jax.transfer_guard("disallow"), shown:
            for step in range(start_step + 1, config.num_train_steps + 1):
                with jax.profiler.StepTraceAnnotation("train", step_num=step):
                    batch = parallel.global_batch(next(train_iter), mesh)
                    state, metrics = step_fn(state, batch, step)
                pending.append(metrics)
                shown.step(step)
                last = step == config.num_train_steps
                if step % config.log_every_steps == 0 or last or step == start_step + 1:
                    scalars = _summarise(jax.device_get(pending))
                    files_skipped += int(scalars.pop("data_skipped"))
                    elapsed = time.perf_counter() - last_log_time
                    scalars["images_per_sec"] = (
                        (step - last_log_step) * config.batch_size / max(elapsed, 1e-9))
                    scalars["steps_per_sec"] = (step - last_log_step) / max(elapsed, 1e-9)
                    scalars["unstable"] = watch.update(step, scalars)
                    writer.write_scalars(step, {f"train/{k}": v for k, v in scalars.items()}
                                         | {"data/skipped": files_skipped})
                    shown.logged(step, scalars)
                    _check_nonfinite(scalars, step, config.nan_patience, manager)
                    pending, last_log_step, last_log_time = [], step, time.perf_counter()
                if step % config.sample_every_steps == 0 or last:
                    samples(step, state)
                if step % config.eval_every_steps == 0 or last:
                    results = scoring.evaluate(translator, state.generator_variables(),
                                               eval_examples, eval_key, extra_evaluators)[2]
                    writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
                    if eval_history is not None:
                        _record_eval(workdir, eval_history, step, len(eval_examples), results)
                    shown.evaluated(step, results)
                    if best is not None:
                        best.offer(step, state, results)
                preempted = watcher.reached(step)
                if step % config.checkpoint_every_steps == 0 or last or preempted:
                    checkpointing.save(manager, step, state, train_iter)
                if preempted:
                    logging.warning("preempted: checkpoint at step %d written; exiting", step)
                    break
        checkpointing.wait(manager)
        watcher.report_exit(config.checkpoint.preemption_timeout_s)
    finally:
        if best is not None:
            best.close()
        writer.close()
    return state


def _eval_history(workdir: str, start_step: int) -> list[dict]:
    """WORKDIR/eval/periodic.json's records up to the step a run starts from (a resume redoes
    the steps after it), read once per run."""
    path = epath.Path(workdir) / checkpointing.PERIODIC_EVALS
    try:
        history = json.loads(path.read_text()) if path.exists() else []
    except ValueError:  # Not ours to repair: start the record again.
        history = []
    return [r for r in history if r.get("step", start_step + 1) <= start_step]


def _record_eval(workdir: str, history: list[dict], step: int, num_examples: int,
                 results: dict) -> None:
    """Appends this eval's means to `history` and writes it as WORKDIR/eval/periodic.json."""
    history.append({"step": step, "num_examples": num_examples,
                    "metrics": {k: float(v) for k, v in results.items()}})
    fileio.write_text(epath.Path(workdir) / checkpointing.PERIODIC_EVALS,
                      json.dumps(history, indent=1))


class NonFiniteError(RuntimeError):
    """Training produced non-finite losses or gradients for too many consecutive steps."""


def _check_nonfinite(scalars: dict[str, float], step: int, patience: int, manager) -> None:
    """`nonfinite_streak` is the longest run of bad steps in the logging window, so a run
    that recovered before the log step still counts."""
    streak = int(scalars["nonfinite_streak"])
    if streak:
        logging.warning("%d consecutive steps up to %d had a non-finite loss or gradient; "
                        "their updates were skipped", streak, step)
    if streak >= patience:
        checkpointing.wait(manager)
        raise NonFiniteError(
            f"{streak} consecutive non-finite steps up to step {step} (nan_patience={patience});"
            f" last good checkpoint: step {manager.latest_step()} in {manager.directory}")


# Counters are reported as their latest value, streaks as their longest, per-step counts summed;
# everything else as the mean of finite values.
_LATEST = ("skipped_steps",)
_LONGEST = ("nonfinite_streak",)
_SUMMED = ("data_skipped",)


def _summarise(metrics: list[dict[str, np.ndarray]]) -> dict[str, float]:
    summary = {}
    for key in metrics[0]:
        values = np.array([m[key] for m in metrics], np.float64)
        finite = values[np.isfinite(values)]
        if key in _LATEST:
            summary[key] = float(values[-1])
        elif key in _LONGEST:
            summary[key] = float(values.max())
        elif key in _SUMMED:
            summary[key] = float(values.sum())
        else:
            summary[key] = float(finite.mean()) if finite.size else float("nan")
    return summary


def _flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
