"""The train state and the pure-functional Pix2Pix train step.

`train_step(models, state, batch) -> (state, metrics)` runs one reference iteration: the
generator forward once, a discriminator update on (A, B) vs (A, G(A)), then a generator update
on GAN + lambda * L1 through the freshly updated discriminator.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from p2p_jax import losses, optim, parallel
from p2p_jax.models import build_discriminator, build_generator

PyTree = Any

# Seeds of the fixed randomness outside training, offsets from `config.seed`: the sample grid's
# and the evaluation's dropout (predict and exports use the seed itself).
SAMPLE_SEED_OFFSET, EVAL_SEED_OFFSET = 1, 2


@flax.struct.dataclass
class TrainState:
    """Everything training needs to continue exactly: checkpointing saves this, nothing else."""

    step: jax.Array
    g_params: PyTree
    g_batch_stats: PyTree
    g_opt_state: PyTree
    d_params: PyTree
    d_batch_stats: PyTree
    d_opt_state: PyTree
    rng: jax.Array  # Base key; per-step randomness is fold_in(rng, step), so resume is exact.
    skipped_steps: jax.Array  # Steps whose update was dropped for a non-finite loss/gradient.
    nonfinite_streak: jax.Array  # Consecutive such steps up to now.


@dataclasses.dataclass(frozen=True)
class Pix2Pix:
    """The static parts of training: networks, optimizers and loss settings."""

    generator: nn.Module
    discriminator: nn.Module
    g_tx: optax.GradientTransformationExtraArgs  # optim.skippable_adam: takes `apply`.
    d_tx: optax.GradientTransformationExtraArgs
    schedule: optax.Schedule
    gan_mode: str
    lambda_l1: float
    eval_mode: bool
    poison_steps: tuple[int, ...] = ()  # Fault-injection hook: these steps get NaN inputs.

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, output_channels: int) -> Pix2Pix:
        return cls(
            generator=build_generator(config, output_channels),
            discriminator=build_discriminator(config),
            g_tx=optim.make_optimizer(config.optimizer),
            d_tx=optim.make_optimizer(config.optimizer),
            schedule=optim.learning_rate_schedule(config.optimizer),
            gan_mode=config.loss.gan_mode,
            lambda_l1=config.loss.lambda_l1,
            eval_mode=config.model.eval_mode,
            poison_steps=tuple(config.debug.nonfinite_steps),
        )


def to_float(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def _apply(module: nn.Module, params: PyTree, stats: PyTree, x: jax.Array, train: bool,
           rng: jax.Array | None = None) -> tuple[jax.Array, PyTree]:
    """Applies a network and returns (output, updated batch statistics)."""
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    rngs = {"dropout": rng} if rng is not None else {}
    out, mutated = module.apply(variables, x, train=train, rngs=rngs, mutable=["batch_stats"])
    return out, mutated.get("batch_stats", stats)


def init_state(models: Pix2Pix, rng: jax.Array, input_shape: tuple[int, ...]) -> TrainState:
    """Initial state for inputs of `input_shape` (N, H, W, C_in); the target has C_out."""
    g_key, d_key, base = jax.random.split(rng, 3)
    a = jnp.zeros(input_shape, jnp.float32)
    g_vars = models.generator.init({"params": g_key}, a, train=False)
    b = jax.eval_shape(lambda: models.generator.apply(g_vars, a, train=False))
    pair = jnp.zeros((*input_shape[:3], input_shape[3] + b.shape[3]), jnp.float32)
    d_vars = models.discriminator.init({"params": d_key}, pair, train=False)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_vars["params"],
        g_batch_stats=g_vars.get("batch_stats", {}),
        g_opt_state=models.g_tx.init(g_vars["params"]),
        d_params=d_vars["params"],
        d_batch_stats=d_vars.get("batch_stats", {}),
        d_opt_state=models.d_tx.init(d_vars["params"]),
        rng=base,
        skipped_steps=jnp.zeros((), jnp.int32),
        nonfinite_streak=jnp.zeros((), jnp.int32),
    )


def global_norm(tree: PyTree) -> jax.Array:
    """`optax.tree.norm` as dot products: its squares would otherwise be shared with Adam's
    second moment, and XLA then writes every gradient's square out in a pass of its own."""
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))


def train_step(models: Pix2Pix, state: TrainState,
               batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Pix2Pix iteration in the reference's order (D update, then G update)."""
    real_a, real_b = to_float(batch["A"]), to_float(batch["B"])
    if models.poison_steps:
        poisoned = jnp.isin(state.step + 1, jnp.array(models.poison_steps))
        real_a = jnp.where(poisoned, jnp.nan, real_a)
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    G, D = models.generator, models.discriminator

    def generate(g_params):
        return _apply(G, g_params, state.g_batch_stats, real_a, True, dropout_rng)

    # The generator runs forward once; its VJP later carries the G-loss gradient back.
    fake_b, g_vjp, g_batch_stats = jax.vjp(generate, state.g_params, has_aux=True)

    def d_loss_fn(d_params):
        fake_logits, stats = _apply(
            D, d_params, state.d_batch_stats,
            jnp.concatenate([real_a, jax.lax.stop_gradient(fake_b)], -1), True)
        real_logits, stats = _apply(D, d_params, stats,
                                    jnp.concatenate([real_a, real_b], -1), True)
        loss_real, loss_fake = losses.discriminator_loss(models.gan_mode, real_logits, fake_logits)
        return 0.5 * (loss_real + loss_fake), (loss_real, loss_fake, stats)

    (d_loss, (d_real, d_fake, d_batch_stats)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = models.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    def g_loss_fn(fake):
        logits, stats = _apply(D, d_params, d_batch_stats,
                               jnp.concatenate([real_a, fake], -1), True)
        gan = losses.generator_gan_loss(models.gan_mode, logits)
        l1 = losses.l1_loss(fake, real_b)
        return gan + models.lambda_l1 * l1, (gan, l1, stats)

    (g_loss, (g_gan, g_l1, d_batch_stats)), fake_grad = jax.value_and_grad(
        g_loss_fn, has_aux=True)(fake_b)
    (g_grads,) = g_vjp(fake_grad)

    # A non-finite loss or gradient drops the whole update, decided on device (no host sync).
    # A NaN/Inf anywhere in the gradients makes their global norm non-finite, so the norms
    # (reported anyway) are the check. The generator's optimizer keeps its state inside its own
    # pass (optim.skippable_adam); the discriminator's and the batch statistics are small
    # enough to select afterwards.
    g_grad_norm, d_grad_norm = global_norm(g_grads), global_norm(d_grads)
    finite = (jnp.isfinite(d_loss) & jnp.isfinite(g_loss) & jnp.isfinite(g_grad_norm)
              & jnp.isfinite(d_grad_norm))
    g_updates, g_opt_state = models.g_tx.update(g_grads, state.g_opt_state, state.g_params,
                                                apply=finite)
    g_params = jax.tree.map(lambda p, u: jnp.where(finite, p + u, p), state.g_params, g_updates)
    selected = dict(g_batch_stats=g_batch_stats, d_params=d_params, d_opt_state=d_opt_state,
                    d_batch_stats=d_batch_stats)
    new_state = state.replace(
        step=state.step + 1,
        skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
        nonfinite_streak=jnp.where(finite, 0, state.nonfinite_streak + 1),
        g_params=g_params, g_opt_state=g_opt_state,
        **{name: jax.tree.map(functools.partial(jnp.where, finite), new, getattr(state, name))
           for name, new in selected.items()})
    metrics = {
        "d_loss": d_loss, "d_real": d_real, "d_fake": d_fake, "g_loss": g_loss,
        "g_gan": g_gan, "g_l1": g_l1,
        "learning_rate": optim.current_learning_rate(models.schedule, state.g_opt_state),
        "g_grad_norm": g_grad_norm, "d_grad_norm": d_grad_norm,
        "skipped_steps": new_state.skipped_steps, "nonfinite_streak": new_state.nonfinite_streak,
    }
    if "skipped" in batch:  # Unreadable files the input pipeline passed over for this batch.
        metrics["data_skipped"] = jnp.sum(batch["skipped"])
    return new_state, metrics


def host_key(seed: int) -> np.ndarray:
    """PRNGKey(seed) as a host array, to pass to code that runs under the transfer guard."""
    return np.asarray(jax.random.PRNGKey(seed), np.uint32)


def image_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
    """One PRNG key per image, fold_in(key, index): an image's randomness depends on its index
    alone, not on the batch it is generated in."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, indices)


def generate(models: Pix2Pix, params: PyTree, batch_stats: PyTree, images: jax.Array,
             keys: jax.Array) -> jax.Array:
    """Generator outputs in [-1, 1] for uint8 inputs, as the reference's test script makes them.

    Without `model.eval_mode` (the reference's default) each image is normalised with its own
    batch statistics and keeps dropout (drawn from its row of `keys`), exactly like the
    reference testing at batch size 1; with it, running statistics and no dropout.
    """
    x = to_float(images)
    if models.eval_mode:
        return _apply(models.generator, params, batch_stats, x, False)[0]

    def one(image, key):
        out, _ = _apply(models.generator, params, batch_stats, image[None], True, key)
        return out[0]

    return jax.vmap(one)(x, keys)


def create_sharded_state(models: Pix2Pix, seed: int, input_shape: tuple[int, ...],
                         mesh: Mesh, fsdp_min_size: int = 2**18) -> TrainState:
    """Initialises the state directly into its shardings (no host copy of the parameters).

    Runs once, so it is compiled without backend optimisation (4x faster to compile on CPU).
    """
    init = functools.partial(init_state, models, input_shape=input_shape)
    rng = jax.random.PRNGKey(seed)
    shardings = parallel.tree_shardings(jax.eval_shape(init, rng), mesh, fsdp_min_size)
    lowered = jax.jit(init, out_shardings=shardings).lower(rng)
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})(rng)


def initial_state(models: Pix2Pix, config: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
    """`create_sharded_state` for the image size, channels, seed and FSDP rule of `config`."""
    size, channels = config.dataset.image_size, config.dataset.input_channels
    return create_sharded_state(models, config.seed, (1, size, size, channels), mesh,
                                config.mesh.fsdp_min_size)


def trace_train_step(models: Pix2Pix, state: TrainState, batch_spec: dict[str, Any],
                     mesh: Mesh) -> jax.stages.Traced:
    """The step jitted with shardings and the state donated, traced for these shapes.

    The state keeps the shardings it was created (or restored) with.
    """
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(
        functools.partial(train_step, models),
        in_shardings=(shardings, parallel.batch_sharding(mesh)),
        out_shardings=(shardings, parallel.replicated(mesh)),
        donate_argnums=0,
    )
    return step.trace(state, batch_spec)


def compile_train_step(models: Pix2Pix, state: TrainState, batch_spec: dict[str, Any],
                       mesh: Mesh) -> jax.stages.Compiled:
    """Compiles the step once (see trace_train_step); returns the executable."""
    return trace_train_step(models, state, batch_spec, mesh).lower().compile()
