"""The pure-functional Pix2Pix train step and generation, jitted in one place.

`train_step(recipe, state, batch) -> (state, metrics)` runs one reference iteration: the
generator forward once, a discriminator update on (A, B) vs (A, G(A)), then a generator update
on GAN + lambda * L1 through the freshly updated discriminator.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from p2p_jax import parallel
from p2p_jax.train import losses, optim
from p2p_jax.train.state import Recipe, TrainState

PyTree = Any

# Seeds of the fixed randomness outside training, offsets from `config.seed`: the sample grid's
# and the evaluation's dropout (predict and exports use the seed itself).
SAMPLE_SEED_OFFSET, EVAL_SEED_OFFSET = 1, 2


def to_float(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1]; float images are taken as already in [-1, 1]."""
    if jnp.issubdtype(images.dtype, jnp.floating):
        return images.astype(jnp.float32)
    return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(values: jax.Array) -> jax.Array:
    """[-1, 1] floats -> uint8, on the device (4x less to fetch than float32)."""
    return jnp.clip(jnp.round((values.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(
        jnp.uint8)


def apply_network(module: nn.Module, params: PyTree, stats: PyTree, x: jax.Array, train: bool,
                  rng: jax.Array | None = None) -> tuple[jax.Array, PyTree]:
    """Applies a network and returns (output, updated batch statistics)."""
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    rngs = {"dropout": rng} if rng is not None else {}
    out, mutated = module.apply(variables, x, train=train, rngs=rngs, mutable=["batch_stats"])
    return out, mutated.get("batch_stats", stats)


def global_norm(tree: PyTree) -> jax.Array:
    """`optax.tree.norm` as dot products: its squares would otherwise be shared with Adam's
    second moment, and XLA then writes every gradient's square out in a pass of its own."""
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))


def _guarded_update(tx: optax.GradientTransformationExtraArgs, grads: PyTree, opt_state: PyTree,
                    params: PyTree, finite: jax.Array) -> tuple[PyTree, PyTree]:
    """The one rule for a non-finite step, for both networks: the optimizer keeps its moments
    inside its own pass (`optim.skippable_adam`) and the parameters keep their values."""
    updates, opt_state = tx.update(grads, opt_state, params, apply=finite)
    return jax.tree.map(lambda p, u: jnp.where(finite, p + u, p), params, updates), opt_state


def train_step(recipe: Recipe, state: TrainState,
               batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Pix2Pix iteration in the reference's order (D update, then G update)."""
    real_a, real_b = to_float(batch["A"]), to_float(batch["B"])
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    G, D = recipe.generator, recipe.discriminator

    def generator_forward(g_params):
        return apply_network(G, g_params, state.g_batch_stats, real_a, True, dropout_rng)

    # The generator runs forward once; its VJP later carries the G-loss gradient back.
    fake_b, g_vjp, g_batch_stats = jax.vjp(generator_forward, state.g_params, has_aux=True)

    def d_loss_fn(d_params):
        fake_logits, stats = apply_network(
            D, d_params, state.d_batch_stats,
            jnp.concatenate([real_a, jax.lax.stop_gradient(fake_b)], -1), True)
        real_logits, stats = apply_network(D, d_params, stats,
                                           jnp.concatenate([real_a, real_b], -1), True)
        loss_real, loss_fake = losses.discriminator_loss(recipe.gan_mode, real_logits,
                                                         fake_logits)
        return 0.5 * (loss_real + loss_fake), (loss_real, loss_fake, stats)

    (d_loss, (d_real, d_fake, d_batch_stats)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    # The generator's loss sees the discriminator after its update; whether that update is
    # kept is decided below with the generator's (XLA computes Adam's pass for D once).
    d_updates, _ = recipe.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    updated_d_params = optax.apply_updates(state.d_params, d_updates)

    def g_loss_fn(fake):
        logits, stats = apply_network(D, updated_d_params, d_batch_stats,
                                      jnp.concatenate([real_a, fake], -1), True)
        gan = losses.generator_gan_loss(recipe.gan_mode, logits)
        l1 = losses.l1_loss(fake, real_b)
        return gan + recipe.lambda_l1 * l1, (gan, l1, stats)

    (g_loss, (g_gan, g_l1, d_batch_stats)), fake_grad = jax.value_and_grad(
        g_loss_fn, has_aux=True)(fake_b)
    (g_grads,) = g_vjp(fake_grad)

    # A non-finite loss or gradient drops the whole step, decided on device (no host sync).
    # A NaN/Inf anywhere in the gradients makes their global norm non-finite, so the norms
    # (reported anyway) are the check.
    g_grad_norm, d_grad_norm = global_norm(g_grads), global_norm(d_grads)
    finite = (jnp.isfinite(d_loss) & jnp.isfinite(g_loss) & jnp.isfinite(g_grad_norm)
              & jnp.isfinite(d_grad_norm))
    g_params, g_opt_state = _guarded_update(recipe.g_tx, g_grads, state.g_opt_state,
                                            state.g_params, finite)
    d_params, d_opt_state = _guarded_update(recipe.d_tx, d_grads, state.d_opt_state,
                                            state.d_params, finite)
    new_state = state.replace(
        step=state.step + 1,
        skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
        nonfinite_streak=jnp.where(finite, 0, state.nonfinite_streak + 1),
        g_params=g_params, g_opt_state=g_opt_state, d_params=d_params, d_opt_state=d_opt_state,
        g_batch_stats=jax.tree.map(functools.partial(jnp.where, finite), g_batch_stats,
                                   state.g_batch_stats),
        d_batch_stats=jax.tree.map(functools.partial(jnp.where, finite), d_batch_stats,
                                   state.d_batch_stats))
    metrics = {
        "d_loss": d_loss, "d_real": d_real, "d_fake": d_fake, "g_loss": g_loss,
        "g_gan": g_gan, "g_l1": g_l1,
        "learning_rate": optim.current_learning_rate(recipe.schedule, state.g_opt_state),
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


def generate(recipe: Recipe, params: PyTree, batch_stats: PyTree, images: jax.Array,
             keys: jax.Array) -> jax.Array:
    """Generator outputs in [-1, 1] for uint8 inputs, as the reference's test script makes them.

    Without `model.eval_mode` (the reference's default) each image is normalised with its own
    batch statistics and keeps dropout (drawn from its row of `keys`), exactly like the
    reference testing at batch size 1; with it, running statistics and no dropout.
    """
    x = to_float(images)
    if recipe.eval_mode:
        return apply_network(recipe.generator, params, batch_stats, x, False)[0]

    def one(image, key):
        out, _ = apply_network(recipe.generator, params, batch_stats, image[None], True, key)
        return out[0]

    return jax.vmap(one)(x, keys)


def trace_train_step(recipe: Recipe, state: TrainState, batch_spec: dict[str, Any],
                     mesh: Mesh) -> jax.stages.Traced:
    """The step jitted with shardings and the state donated, traced for these shapes.

    The state keeps the shardings it was created (or restored) with.
    """
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(
        functools.partial(train_step, recipe),
        in_shardings=(shardings, parallel.batch_sharding(mesh)),
        out_shardings=(shardings, parallel.replicated(mesh)),
        donate_argnums=0,
    )
    return step.trace(state, batch_spec)


def compile_train_step(recipe: Recipe, state: TrainState, batch_spec: dict[str, Any],
                       mesh: Mesh) -> jax.stages.Compiled:
    """Compiles the step once (see trace_train_step); returns the executable."""
    return trace_train_step(recipe, state, batch_spec, mesh).lower().compile()
