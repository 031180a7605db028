"""The pure-functional train step, jitted in one place.

`train_step(recipe, state, batch) -> (state, metrics)` runs one iteration: the generator
forward once, then the losses and gradients of both networks in the recipe's update order
(the reference's D-then-G, or pix2pixHD's joint update), then both updates, dropped together
when anything is non-finite. Running a generator outside training is `models.generation`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from p2p_jax import ops, parallel
from p2p_jax.models.generation import apply_network, encode_input, to_float
from p2p_jax.train import augment, losses, optim, spectral
from p2p_jax.train.state import Recipe, TrainState

PyTree = Any
AUGMENT_STREAM = 1  # The augmentation's key: fold_in(the step's key, this).


def global_norm(tree: PyTree) -> jax.Array:
    """`optax.tree.norm` as dot products: its squares would otherwise be shared with Adam's
    second moment, and XLA then writes every gradient's square out in a pass of its own."""
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))


def _guarded_update(tx: optax.GradientTransformationExtraArgs, grads: PyTree, opt_state: PyTree,
                    params: PyTree, finite: jax.Array, **gates) -> tuple[PyTree, PyTree]:
    """The one rule for a non-finite step, for both networks: the optimizer keeps its moments
    inside its own pass (`optim.skippable_adam`) and the parameters keep their values."""
    updates, opt_state = tx.update(grads, opt_state, params, apply=finite, **gates)
    return jax.tree.map(lambda p, u: jnp.where(finite, p + u, p), params, updates), opt_state


def ema_decay_at(decay: float, updates: jax.Array) -> jax.Array:
    """The average's decay after `updates` updates: `decay`, or less early on ((1 + n) /
    (10 + n), as TensorFlow's ExponentialMovingAverage with num_updates), so a short run's
    average is not mostly its initial weights."""
    n = updates.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def _moving_average(recipe: Recipe, state: TrainState, params: PyTree, batch_stats: PyTree,
                    finite: jax.Array) -> dict[str, PyTree]:
    """The generator's averaged weights after this step ({} when none are kept); a dropped
    (non-finite) step leaves them as they were."""
    if not recipe.ema_decay:
        return {}
    weight = 1.0 - jnp.where(finite, ema_decay_at(recipe.ema_decay, state.step + 1), 1.0)
    return {"ema_params": optax.incremental_update(params, state.ema_params, weight),
            "ema_batch_stats": optax.incremental_update(batch_stats, state.ema_batch_stats,
                                                        weight)}


def _generator_objective(recipe: Recipe, fake: jax.Array, fake_out, real_out,
                         real_b: jax.Array, frozen: dict) -> tuple[jax.Array, dict]:
    """GAN + lambda_l1 * L1 (pix2pix) + lambda_feat * feature matching + lambda_vgg * VGG
    (pix2pixHD), with the terms that are on."""
    terms = {"g_gan": losses.generator_gan_loss(recipe.gan_mode, fake_out),
             "g_l1": losses.l1_loss(fake, real_b)}
    total = terms["g_gan"] + recipe.lambda_l1 * terms["g_l1"]
    if recipe.lambda_feat:
        terms["g_feat"] = losses.feature_matching(fake_out, real_out)
        total += recipe.lambda_feat * terms["g_feat"]
    if recipe.lambda_vgg:
        vgg = functools.partial(recipe.perceptual.apply, {"params": frozen["vgg"]})
        terms["g_vgg"] = losses.perceptual(vgg(fake), vgg(real_b))
        total += recipe.lambda_vgg * terms["g_vgg"]
    return total, terms


@dataclasses.dataclass(frozen=True)
class _Forward:
    """What both update orders start from: the target, the generator's output, and the
    discriminator on (condition, image) as `discriminate(d_params, batch_stats, image)`."""

    real_b: jax.Array
    fake_b: jax.Array
    discriminate: Callable[[PyTree, PyTree, jax.Array], tuple[Any, PyTree]]


@dataclasses.dataclass(frozen=True)
class _Gradients:
    """Both networks' losses and gradients (the generator's as the gradient of its output)."""

    d_loss: jax.Array  # The GAN part; the R1 penalty, when on, is `d_r1`.
    d_real: jax.Array
    d_fake: jax.Array
    d_r1: jax.Array
    d_grads: PyTree
    d_batch_stats: PyTree
    g_loss: jax.Array
    g_terms: dict[str, jax.Array]
    fake_grad: jax.Array


def _r1(recipe: Recipe, state: TrainState, forward: _Forward) -> tuple[jax.Array, PyTree]:
    """(R1 penalty, its gradient for D, weighted gamma / 2 * r1_every) on the steps it is due
    (lazy regularisation: every r1_every steps), (0, zeros) on the others."""
    def weighted(d_params):
        penalty = losses.r1_penalty(
            lambda image: forward.discriminate(d_params, state.d_batch_stats, image)[0],
            forward.real_b)
        return 0.5 * recipe.r1_gamma * recipe.r1_every * penalty, penalty

    def due(d_params):
        (_, penalty), grads = jax.value_and_grad(weighted, has_aux=True)(d_params)
        return penalty, grads

    def not_due(d_params):
        return jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, d_params)

    return jax.lax.cond(state.step % recipe.r1_every == 0, due, not_due, state.d_params)


def _with_r1(recipe: Recipe, state: TrainState, forward: _Forward, d_grads: PyTree
             ) -> tuple[jax.Array, PyTree]:
    """D's gradients with R1's added when it is on; (penalty, gradients)."""
    if not recipe.r1_gamma:
        return jnp.zeros((), jnp.float32), d_grads
    penalty, r1_grads = _r1(recipe, state, forward)
    return penalty, jax.tree.map(jnp.add, d_grads, r1_grads)


def _reference_gradients(recipe: Recipe, state: TrainState, forward: _Forward,
                         frozen: dict) -> _Gradients:
    """The reference's order: D's loss on (A, B) vs (A, G(A)), then G's loss through D after
    its update (XLA computes Adam's pass for D once, shared with the update itself)."""
    discriminate, fake_b, real_b = forward.discriminate, forward.fake_b, forward.real_b

    def d_loss_fn(d_params):
        fake_out, stats = discriminate(d_params, state.d_batch_stats,
                                       jax.lax.stop_gradient(fake_b))
        real_out, stats = discriminate(d_params, stats, real_b)
        loss_real, loss_fake = losses.discriminator_loss(recipe.gan_mode, real_out, fake_out)
        return 0.5 * (loss_real + loss_fake), (loss_real, loss_fake, stats)

    (d_loss, (d_real, d_fake, d_batch_stats)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_r1, d_grads = _with_r1(recipe, state, forward, d_grads)
    # Whether this update is kept is decided later, with the generator's.
    d_updates, _ = recipe.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    updated_d_params = optax.apply_updates(state.d_params, d_updates)
    real_out = None
    if recipe.lambda_feat:  # Real features from the same (updated) D as the fake ones.
        real_out = jax.lax.stop_gradient(
            discriminate(updated_d_params, d_batch_stats, real_b)[0])

    def g_loss_fn(fake):
        out, stats = discriminate(updated_d_params, d_batch_stats, fake)
        total, terms = _generator_objective(recipe, fake, out, real_out, real_b, frozen)
        return total, (terms, stats)

    (g_loss, (g_terms, d_batch_stats)), fake_grad = jax.value_and_grad(
        g_loss_fn, has_aux=True)(fake_b)
    return _Gradients(d_loss, d_real, d_fake, d_r1, d_grads, d_batch_stats, g_loss, g_terms,
                      fake_grad)


def _joint_gradients(recipe: Recipe, state: TrainState, forward: _Forward,
                     frozen: dict) -> _Gradients:
    """pix2pixHD's order: both losses from one forward pass of D on the fake and one on the
    real pair, both networks' gradients from the networks before the step."""
    discriminate, fake_b, real_b = forward.discriminate, forward.fake_b, forward.real_b
    fake_out, d_vjp_fake, stats = jax.vjp(
        lambda p, f: discriminate(p, state.d_batch_stats, f), state.d_params, fake_b,
        has_aux=True)
    real_out, d_vjp_real, d_batch_stats = jax.vjp(
        lambda p: discriminate(p, stats, real_b), state.d_params, has_aux=True)

    def d_loss_of(real, fake):
        loss_real, loss_fake = losses.discriminator_loss(recipe.gan_mode, real, fake)
        return 0.5 * (loss_real + loss_fake), (loss_real, loss_fake)

    (d_loss, (d_real, d_fake)), (d_cot_real, d_cot_fake) = jax.value_and_grad(
        d_loss_of, argnums=(0, 1), has_aux=True)(real_out, fake_out)
    d_grads = jax.tree.map(jnp.add, d_vjp_real(d_cot_real)[0], d_vjp_fake(d_cot_fake)[0])
    d_r1, d_grads = _with_r1(recipe, state, forward, d_grads)
    (g_loss, g_terms), (fake_cot, fake_direct) = jax.value_and_grad(
        lambda out, fake: _generator_objective(recipe, fake, out, real_out, real_b, frozen),
        argnums=(0, 1), has_aux=True)(fake_out, fake_b)
    fake_grad = d_vjp_fake(fake_cot)[1] + fake_direct
    return _Gradients(d_loss, d_real, d_fake, d_r1, d_grads, d_batch_stats, g_loss, g_terms,
                      fake_grad)


_GRADIENTS = {"d_then_g": _reference_gradients, "joint": _joint_gradients}


def _network_runner(module: Any, fsdp: PyTree | None) -> Callable[..., tuple[Any, PyTree]]:
    """`run(params, stats, x, train, rng=None) -> (output, stats)` for one network: as the
    compiler partitions it, or with `fsdp` (its parameters' shardings) as one program per
    device that gathers them (`parallel.gathered_apply`)."""
    if fsdp is None:
        return functools.partial(apply_network, module)

    def run(params, stats, x, train, rng=None):
        return parallel.gathered_apply(
            lambda whole, local_x, key: apply_network(module, whole, stats, local_x, train, key),
            params, fsdp, module.dtype, x, rng)

    return run


def train_step(recipe: Recipe, state: TrainState, batch: dict[str, jax.Array],
               frozen: dict | None = None, fsdp: TrainState | None = None
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One iteration. `update_order="d_then_g"` is the reference's: D updated on (A, B) vs
    (A, G(A)), then G through the updated D. `joint` is pix2pixHD's: both losses from one
    forward pass of D, both networks updated. `frozen`: fixed networks' weights (VGG19).
    `fsdp`: the state's shardings, where both networks run as one program per device that
    gathers the parameters FSDP splits (see `per_device_fsdp`)."""
    frozen = frozen or {}
    condition, real_b = encode_input(recipe.generator, batch), to_float(
        batch["B"], recipe.generator.output_values)
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    G, D = recipe.generator.network, recipe.discriminator
    run_g = _network_runner(G, None if fsdp is None else fsdp.g_params)
    run_d = _network_runner(D, None if fsdp is None else fsdp.d_params)

    def generator_forward(g_params):
        return run_g(g_params, state.g_batch_stats, condition, True, dropout_rng)

    # The generator runs forward once; its VJP later carries the G-loss gradient back.
    fake_b, g_vjp, g_batch_stats = jax.vjp(generator_forward, state.g_params, has_aux=True)

    # One transform per example and step, the same for every pair D sees in the step.
    augment_key = jax.random.fold_in(dropout_rng, AUGMENT_STREAM)
    # Spectral norm: one power-iteration step, then every D pass divides by the estimate.
    d_vectors = (spectral.power_iteration(state.d_params, state.d_spectral_u)
                 if recipe.spectral_norm_d else None)

    def discriminate(d_params, stats, image):
        if d_vectors is not None:
            d_params = spectral.normalize(d_params, d_vectors)
        # In D's compute dtype, where its first layer would cast it anyway.
        condition_d, image = ops.as_array(condition, D.dtype).astype(D.dtype), image.astype(D.dtype)
        if recipe.diff_augment:
            pair = augment.augment_pair(condition_d, image, augment_key, recipe.diff_augment)
        else:
            pair = jnp.concatenate([condition_d, image], -1)
        return run_d(d_params, stats, pair, True)

    grads = _GRADIENTS[recipe.update_order](
        recipe, state, _Forward(real_b, fake_b, discriminate), frozen)
    (g_grads,) = g_vjp(grads.fake_grad)

    # A non-finite loss or gradient drops the whole step, decided on device (no host sync).
    # A NaN/Inf anywhere in the gradients makes their global norm non-finite, so the norms
    # (reported anyway) are the check.
    g_grad_norm, d_grad_norm = global_norm(g_grads), global_norm(grads.d_grads)
    finite = (jnp.isfinite(grads.d_loss) & jnp.isfinite(grads.g_loss)
              & jnp.isfinite(g_grad_norm) & jnp.isfinite(d_grad_norm))
    g_params, g_opt_state = _guarded_update(recipe.g_tx, g_grads, state.g_opt_state,
                                            state.g_params, finite,
                                            unfrozen=state.step >= recipe.fix_global_steps)
    d_params, d_opt_state = _guarded_update(recipe.d_tx, grads.d_grads, state.d_opt_state,
                                            state.d_params, finite)
    g_batch_stats = jax.tree.map(functools.partial(jnp.where, finite), g_batch_stats,
                                 state.g_batch_stats)
    new_state = state.replace(
        step=state.step + 1,
        skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
        nonfinite_streak=jnp.where(finite, 0, state.nonfinite_streak + 1),
        g_params=g_params, g_opt_state=g_opt_state, d_params=d_params, d_opt_state=d_opt_state,
        g_batch_stats=g_batch_stats,
        d_batch_stats=jax.tree.map(functools.partial(jnp.where, finite), grads.d_batch_stats,
                                   state.d_batch_stats),
        **_moving_average(recipe, state, g_params, g_batch_stats, finite),
        **({} if d_vectors is None else {"d_spectral_u": jax.tree.map(
            functools.partial(jnp.where, finite), d_vectors, state.d_spectral_u)}))
    metrics = {
        "d_loss": grads.d_loss, "d_real": grads.d_real, "d_fake": grads.d_fake,
        **({"d_r1": grads.d_r1} if recipe.r1_gamma else {}),
        "g_loss": grads.g_loss, **grads.g_terms,
        "learning_rate": optim.current_learning_rate(recipe.schedule, state.g_opt_state),
        "g_grad_norm": g_grad_norm, "d_grad_norm": d_grad_norm,
        "skipped_steps": new_state.skipped_steps, "nonfinite_streak": new_state.nonfinite_streak,
    }
    if "skipped" in batch:  # Unreadable files the input pipeline passed over for this batch.
        metrics["data_skipped"] = jnp.sum(batch["skipped"])
    return new_state, metrics


def per_device_fsdp(recipe: Recipe, mesh: Mesh) -> bool:
    """Whether FSDP runs the networks as one program per device (`parallel.gathered_apply`):
    where the mesh splits parameters, for networks that treat examples independently, in XLA's
    own convolutions' form. Otherwise the compiler partitions the step: batch norm's
    statistics span the devices, and XLA:CPU (the CPU forms) gathers bfloat16 as float32 and
    copies each gathered kernel into another layout (pix2pixHD's local step at 128x256 on 8
    devices: 2.13 GB per device, against 1.07 partitioned by the compiler)."""
    return mesh.shape[parallel.FSDP_AXIS] > 1 and recipe.fsdp_per_device


def describe_mesh(recipe: Recipe, mesh: Mesh) -> str:
    """The mesh as the first screen names it, with the FSDP form the step takes."""
    fsdp = mesh.shape[parallel.FSDP_AXIS]
    shape = f"mesh data {mesh.shape[parallel.DATA_AXIS]} x fsdp {fsdp}"
    if fsdp == 1:
        return f"{shape} (data parallel)"
    form = ("gathered on each device" if per_device_fsdp(recipe, mesh)
            else "partitioned by the compiler")
    return f"{shape} (parameters split {fsdp} ways, {form})"


# The per-device FSDP step on TPU compiles without XLA's latency-hiding scheduler, which
# overlaps the weights' all-gathers with compute by holding activations longer: pix2pixHD's
# 2048x1024 step on 8 v5e chips then needed 16.15 GB of temporaries per chip, 11.73 without.
PER_DEVICE_FSDP_TPU_OPTIONS = {"xla_tpu_enable_latency_hiding_scheduler": False}


def step_compiler_options(recipe: Recipe, mesh: Mesh, memory_limit_gb: float = 0.0
                          ) -> dict[str, Any]:
    """XLA options the step compiles with on this mesh (chosen once, like the conv forms).
    `memory_limit_gb` (`mesh.memory_limit_gb`): on TPU, the HBM the compiler fits the step
    into, where it would otherwise stop packing once the step fits the chip (the 2048x1024
    step on 8 v5e chips, before instance norm kept only its input: 12.10 GB with the chip's
    16, 11.83 told 11.74)."""
    if mesh.devices.flat[0].platform != "tpu":
        return {}
    options = dict(PER_DEVICE_FSDP_TPU_OPTIONS) if per_device_fsdp(recipe, mesh) else {}
    if memory_limit_gb:
        options["xla_tpu_max_hbm_size_mib"] = int(memory_limit_gb * 1e9 / 2**20)
    return options


def trace_train_step(recipe: Recipe, state: TrainState, batch_spec: dict[str, Any],
                     mesh: Mesh, frozen: dict | None = None) -> jax.stages.Traced:
    """The step jitted with shardings and the state donated, traced for these shapes.

    The state keeps the shardings it was created (or restored) with; fixed networks' weights
    (`frozen`) are replicated.
    """
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(
        functools.partial(train_step, recipe,
                          fsdp=shardings if per_device_fsdp(recipe, mesh) else None),
        in_shardings=(shardings, parallel.batch_sharding(mesh), parallel.replicated(mesh)),
        out_shardings=(shardings, parallel.replicated(mesh)),
        donate_argnums=0,
    )
    return step.trace(state, batch_spec, frozen or {})


def compile_train_step(recipe: Recipe, state: TrainState, batch_spec: dict[str, Any],
                       mesh: Mesh, frozen: dict | None = None,
                       compiler_options: dict[str, Any] | None = None,
                       memory_limit_gb: float = 0.0
                       ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Compiles the step once (see trace_train_step) with `step_compiler_options`; returns
    `step(state, batch)`. `compiler_options`: more XLA options for this program only (the
    benchmarks' A/B of flags)."""
    options = {**step_compiler_options(recipe, mesh, memory_limit_gb),
               **(compiler_options or {})}
    compiled = trace_train_step(recipe, state, batch_spec, mesh, frozen).lower().compile(
        compiler_options=options or None)
    frozen = frozen or {}
    return lambda state, batch: compiled(state, batch, frozen)
