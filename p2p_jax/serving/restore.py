"""The inference restore: a trained generator back from its workdir, without the training stack.

Only the generator's parameters and batch statistics are read from the checkpoint (Orbax
restores that subtree); no discriminator, optimizer moments or perceptual-loss weights are
built or loaded, and the channels come from the run's config.json, so `--mode=predict`,
`eval`, `export` and `serve` need the workdir alone. Training resumes the whole train state
(`train/loop.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from p2p_jax import checkpointing, ops, parallel
from p2p_jax.config.checks import validate_config
from p2p_jax.config.sizes import image_hw
from p2p_jax.data import pipeline
from p2p_jax.models.build import compute_dtype
from p2p_jax.models.generation import (
    Generator,
    GeneratorVariables,
    TrainedGenerator,
    model_input_channels,
)


def abstract_variables(generator: Generator, config: ml_collections.ConfigDict,
                       mesh: jax.sharding.Mesh) -> GeneratorVariables:
    """The generator's variables as shapes with the shardings training gives them (FSDP
    splits the large ones), so a restore places each array where it belongs."""
    height, width = image_hw(config.dataset.image_size)
    shapes = jax.eval_shape(
        lambda: generator.network.init(
            jax.random.PRNGKey(0),
            jnp.zeros((1, height, width, model_input_channels(config.dataset))), train=False))
    shapes = {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}
    shardings = parallel.tree_shardings(shapes, mesh, config.mesh.fsdp_min_size)
    placed = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          shapes, shardings)
    return GeneratorVariables(placed["params"], placed["batch_stats"])


def restore(config: ml_collections.ConfigDict, workdir: str, step: int | str | None = None,
            conv_impl: str | None = None, devices: list[jax.Device] | None = None
            ) -> TrainedGenerator:
    """The generator of the checkpoint at `step` (default: latest; "best": the best-scoring
    one, see `checkpoint.best_metric`) on a mesh over `devices` (default: all): its moving
    average when the run kept one (`model.ema_decay`), as training's samples and evaluations
    used. `conv_impl` overrides `model.conv_impl` (exports use the portable "xla")."""
    validate_config(config)
    config = pipeline.resolve_data(config, workdir)
    mesh = parallel.create_mesh(config.mesh, devices)
    impl = ops.resolve_impl(conv_impl or config.model.conv_impl, mesh)
    generator = Generator.from_config(
        config, impl, ops.uses_label_lookups(impl, mesh, compute_dtype(config)))
    target = abstract_variables(generator, config, mesh)
    names = (("ema_params", "ema_batch_stats") if config.model.ema_decay
             else ("g_params", "g_batch_stats"))
    saved, step = checkpointing.restore_generator(
        workdir, dict(zip(names, (target.params, target.batch_stats), strict=True)), step,
        config.checkpoint)
    logging.info("restored the generator%s of the checkpoint at step %d from %s",
                 " (its moving average)" if config.model.ema_decay else "", step, workdir)
    variables = GeneratorVariables(*(saved[name] for name in names))
    return TrainedGenerator(config, mesh, generator, variables, step)
