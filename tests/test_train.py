"""The train step: reference semantics, sharding invariance, learnability."""

import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from p2p_jax import parallel
from p2p_jax.data import pipeline, values
from p2p_jax.eval import metrics, scoring
from p2p_jax.models import generation
from p2p_jax.models.translate import Translator
from p2p_jax.train import losses
from p2p_jax.train import state as train_state
from p2p_jax.train import step as train_step


def setup(config, devices):
    built = train_state.build(config, devices=devices)
    return built.mesh, built.recipe, built.state


def batches(config, count):
    it = pipeline.create_train_iterator(config, 0, 1)
    return [next(it) for _ in range(count)]


def naive_step(opt, recipe, state, batch):
    """The reference iteration written plainly: G forward for D, and again inside the G loss,
    with optax's own Adam."""
    adam = optax.adam(recipe.schedule, b1=opt.b1, b2=opt.b2)
    a, b = (generation.to_float(batch[k], values.UINT8) for k in ("A", "B"))
    rng = jax.random.fold_in(state.rng, state.step)

    def gen(g_params):
        return generation.apply_network(recipe.generator.network, g_params,
                                        state.g_batch_stats, a, True, rng)[0]

    def disc(d_params, x, stats):
        return generation.apply_network(recipe.discriminator, d_params, stats, x, True)

    def d_loss(d_params):
        fake_logits, stats = disc(d_params, jnp.concatenate([a, gen(state.g_params)], -1),
                                  state.d_batch_stats)
        real_logits, stats = disc(d_params, jnp.concatenate([a, b], -1), stats)
        real, fake = losses.discriminator_loss(recipe.gan_mode, real_logits, fake_logits)
        return 0.5 * (real + fake), stats

    (d_value, d_stats), d_grads = jax.value_and_grad(d_loss, has_aux=True)(state.d_params)
    d_updates, _ = adam.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    def g_loss(g_params):
        fake = gen(g_params)
        logits, _ = disc(d_params, jnp.concatenate([a, fake], -1), d_stats)
        gan = losses.generator_gan_loss(recipe.gan_mode, logits)
        return gan + recipe.lambda_l1 * losses.l1_loss(fake, b)

    g_value, g_grads = jax.value_and_grad(g_loss)(state.g_params)
    g_updates, _ = adam.update(g_grads, state.g_opt_state, state.g_params)
    return d_value, g_value, d_params, optax.apply_updates(state.g_params, g_updates)


@pytest.mark.slow
def test_step_matches_plain_reference_iteration(tiny_config, devices):
    mesh, recipe, state = setup(tiny_config, devices[:1])
    batch = parallel.global_batch(batches(tiny_config, 1)[0], mesh)
    reference = functools.partial(naive_step, tiny_config.optimizer, recipe)
    d_loss, g_loss, d_params, g_params = jax.jit(reference)(state, batch)
    new_state, metrics = jax.jit(functools.partial(train_step.train_step, recipe))(state, batch)
    assert metrics["d_loss"] == pytest.approx(float(d_loss), rel=1e-5)
    assert metrics["g_loss"] == pytest.approx(float(g_loss), rel=1e-5)
    assert metrics["g_loss"] == pytest.approx(
        float(metrics["g_gan"] + 100.0 * metrics["g_l1"]), rel=1e-5)
    # Adam's first step moves every parameter by about lr * sign(gradient) = 2e-4, so a gradient
    # at rounding level (summed in another order) may move by a fraction of that.
    chex_close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=2e-5)
    jax.tree.map(chex_close, new_state.d_params, d_params)
    jax.tree.map(chex_close, new_state.g_params, g_params)
    assert int(new_state.step) == 1


def run_steps(config, devices, count):
    mesh, recipe, state = setup(config, devices)
    step_fn = None
    history = []
    for local in batches(config, count):
        batch = parallel.global_batch(local, mesh)
        if step_fn is None:
            step_fn = train_step.compile_train_step(recipe, state, batch, mesh)
        state, metrics = step_fn(state, batch)
        history.append(jax.device_get(metrics))
    return jax.device_get(state), history


def relative_difference(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def test_compile_options_reach_xla(tiny_config, devices):
    """The benchmarks' per-program XLA options are passed to the compiler: one it does not
    know fails, naming it."""
    mesh, recipe, state = setup(tiny_config, devices)
    batch = parallel.global_batch(batches(tiny_config, 1)[0], mesh)
    with pytest.raises(Exception, match="xla_no_such_option"):
        train_step.compile_train_step(recipe, state, batch, mesh,
                                      compiler_options={"xla_no_such_option": True})


@pytest.mark.slow
def test_sharded_step_equals_single_device(tiny_config, devices):
    """Batch norm statistics are global, so 8 devices compute what 1 device computes, up to the
    order of float sums: XLA picks kernels per CPU and the all-reduce adds in another order.

    What a reordering can change, derived from the computation: quantities linear in the
    gradients and activations (batch statistics, Adam's moments) by float32 rounding of sums
    of up to n = 8192 terms (batch x positions), n * eps = 1e-3 of each array's norm; a
    parameter by at most Adam's step bound, |update| <= lr * |m_hat| / sqrt(v_hat) <= 1.1 lr
    per step for b1=0.5, b2=0.999, as a near-zero gradient can flip its sign. Nothing depends
    on the CPU the test runs on (this one's worst linear difference is 7e-6).
    """
    steps = 2
    single_state, single = run_steps(tiny_config, devices[:1], steps)
    sharded_state, sharded = run_steps(tiny_config, devices, steps)
    for a, b in zip(single, sharded, strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    linear = {"g_batch_stats": (single_state.g_batch_stats, sharded_state.g_batch_stats),
              "d_batch_stats": (single_state.d_batch_stats, sharded_state.d_batch_stats),
              "g_moments": (single_state.g_opt_state[0], sharded_state.g_opt_state[0]),
              "d_moments": (single_state.d_opt_state[0], sharded_state.d_opt_state[0])}
    for name, (a, b) in linear.items():
        flat_a, flat_b = (jax.tree_util.tree_flatten_with_path(t)[0] for t in (a, b))
        for (path, x), (_, y) in zip(flat_a, flat_b, strict=True):
            assert relative_difference(x, y) < 1e-3, (name, jax.tree_util.keystr(path))
    bound = 2 * steps * 1.1 * tiny_config.optimizer.learning_rate
    for a, b in ((single_state.g_params, sharded_state.g_params),
                 (single_state.d_params, sharded_state.d_params)):
        jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=0, atol=bound), a, b)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters(tiny_config, devices):
    tiny_config.dtype = "bfloat16"
    state, history = run_steps(tiny_config, devices[:2], 2)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(state.g_params))
    assert all(np.isfinite(h["g_loss"]) for h in history)


def test_generated_image_does_not_depend_on_its_batch(tiny_config, devices):
    """Like the reference testing at batch 1: each image has its own norm statistics."""
    mesh, recipe, state = setup(tiny_config, devices[:1])
    examples = pipeline.eval_examples(tiny_config, 4)
    translator = Translator(recipe.generator, mesh, 4, 2**tiny_config.model.num_downs)
    rng = jax.random.PRNGKey(0)
    variables = state.generator_variables()
    full, _ = translator.generate(variables, examples, rng)
    changed = [examples[0]] + [{**e, "A": 255 - e["A"]} for e in examples[1:]]
    partial, _ = translator.generate(variables, changed, rng)
    np.testing.assert_allclose(full[0], partial[0], atol=1)  # uint8, rounding
    assert not np.allclose(full[1], partial[1], atol=1)
    # A lone image runs in a batch of one, not padded to eval.batch_size copies, and gives
    # what it gave among four.
    with mock.patch.object(translator, "_run_batch", wraps=translator._run_batch) as run:
        alone, _ = translator.generate(variables, examples[:1], rng)
        translator.generate(variables, examples[:3], rng)
    np.testing.assert_allclose(alone[0], full[0], atol=1)
    # Powers of two times the device count, at most the batch size.
    assert [call.args[-1] for call in run.call_args_list] == [1, 4]


@pytest.mark.slow
def test_l1_to_target_falls_on_embedded_task(tiny_config, devices):
    """Learnability: 120 steps on the synthetic labels->photo task cut eval L1 by over a third."""
    tiny_config.num_train_steps = 120  # The linear schedule decays to 0 at the last step.
    mesh, recipe, state = setup(tiny_config, devices[:1])
    translator = Translator(recipe.generator, mesh, 8, 2**tiny_config.model.num_downs,
                            score=metrics.image_metrics)
    examples = pipeline.eval_examples(tiny_config, 8)
    rng = jax.random.PRNGKey(1)
    before = scoring.evaluate(translator, state.generator_variables(), examples, rng)[2]
    step_fn = None
    it = pipeline.create_train_iterator(tiny_config, 0, 1)
    for _ in range(120):
        batch = parallel.global_batch(next(it), mesh)
        step_fn = step_fn or train_step.compile_train_step(recipe, state, batch, mesh)
        state, _ = step_fn(state, batch)
    after = scoring.evaluate(translator, state.generator_variables(), examples, rng)[2]
    assert after["l1"] < 0.65 * before["l1"], (before, after)
    assert after["psnr"] > before["psnr"] + 2.5, (before, after)
