"""Learning-rate schedules, in steps, and the skippable Adam."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from p2p_jax.train import optim


def opt_config(schedule: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        learning_rate=2e-4, b1=0.5, b2=0.999, schedule=schedule, constant_steps=100,
        decay_steps=100, step_size=30, step_gamma=0.1))


def test_linear_is_constant_then_decays_to_zero():
    lr = optim.learning_rate_schedule(opt_config("linear"))
    assert lr(0) == pytest.approx(2e-4)
    assert lr(100) == pytest.approx(2e-4)
    assert lr(150) == pytest.approx(1e-4)
    assert lr(200) == pytest.approx(0.0)
    assert lr(250) == pytest.approx(0.0)


def test_cosine_step_constant():
    cosine = optim.learning_rate_schedule(opt_config("cosine"))
    assert cosine(0) == pytest.approx(2e-4) and cosine(50) == pytest.approx(1e-4)
    assert cosine(100) == pytest.approx(0.0, abs=1e-12)
    step = optim.learning_rate_schedule(opt_config("step"))
    assert step(29) == pytest.approx(2e-4) and step(30) == pytest.approx(2e-5)
    assert step(65) == pytest.approx(2e-6)
    assert optim.learning_rate_schedule(opt_config("constant"))(10**6) == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="optimizer.schedule"):
        optim.learning_rate_schedule(opt_config("plateau"))


def test_adam_uses_beta1_one_half():
    tx = optim.make_optimizer(opt_config("constant"))
    params = {"w": jnp.zeros(2)}
    updates, _ = tx.update({"w": jnp.array([1.0, -2.0])}, tx.init(params), params)
    # First Adam step: m/(1-b1) / (sqrt(v/(1-b2)) + eps) = sign(g), scaled by -lr.
    assert updates["w"].tolist() == pytest.approx([-2e-4, 2e-4], rel=1e-4)


def test_skippable_adam_is_optax_adam_and_skips_exactly():
    """Bit-for-bit optax.adam over a decaying schedule; a skipped step changes nothing, so the
    steps after it match optax run without it."""
    opt = opt_config("linear")
    opt.constant_steps, opt.decay_steps = 1, 4
    ours, reference = optim.make_optimizer(opt), optax.adam(
        optim.learning_rate_schedule(opt), b1=opt.b1, b2=opt.b2)
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32), "b": jnp.zeros(5)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
             for _ in range(3)]
    ours_state, reference_state = ours.init(params), reference.init(params)
    ours_params = reference_params = params
    for i, g in enumerate(grads):
        if i == 1:  # Skipped: NaN gradients, dropped on device.
            nan = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), g)
            _, skipped_state = jax.jit(ours.update)(nan, ours_state, ours_params,
                                                    apply=jnp.array(False))
            jax.tree.map(np.testing.assert_array_equal, skipped_state, ours_state)
        updates, ours_state = jax.jit(ours.update)(g, ours_state, ours_params,
                                                   apply=jnp.array(True))
        ours_params = optax.apply_updates(ours_params, updates)
        updates, reference_state = jax.jit(reference.update)(g, reference_state, reference_params)
        reference_params = optax.apply_updates(reference_params, updates)
        jax.tree.map(np.testing.assert_array_equal, ours_params, reference_params)
        jax.tree.map(np.testing.assert_array_equal, ours_state, reference_state)
