"""The training recipe beyond 2017: the generator's moving average, two time-scale learning
rates, the best checkpoints, the instability warning, and `:reference`, the 2017 recipe."""

import contextlib
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging as absl_logging

from p2p_jax import checkpointing, parallel
from p2p_jax.config import defaults, shipped
from p2p_jax.data import pipeline
from p2p_jax.train import augment, losses, monitor, spectral
from p2p_jax.train import state as train_state
from p2p_jax.train import step as train_step


def compiled_step(config, devices):
    """(set-up, step(state, host batch or placed batch)), jitted for whatever batch types."""
    built = train_state.build(config, devices=devices)
    step = jax.jit(functools.partial(train_step.train_step, built.recipe))

    def run(state, batch):
        if not isinstance(batch["A"], jax.Array):
            batch = parallel.global_batch(batch, built.mesh)
        return step(state, batch)

    return built, run


def host(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(tree))


@pytest.mark.slow
def test_moving_average_and_two_time_scale_rates_follow_their_definitions(tiny_config,
                                                                         devices):
    """EMA after n updates = d_n * EMA + (1 - d_n) * weights, d_n = min(decay, (1+n)/(10+n)),
    for the parameters and batch statistics, computed by hand from each step's weights; a
    dropped (non-finite) step leaves it where it was; inference reads the average. Adam's
    first step moves each weight by its rate: 1e-4 for G, 4e-4 for D (TTUR). The lazy R1
    penalty is computed on the steps it is due only."""
    tiny_config.model.ema_decay = 0.25  # Under the warm-up's 0.18, 0.25, 0.31 from step 2.
    tiny_config.optimizer.learning_rate = 1e-4
    tiny_config.optimizer.d_learning_rate = 4e-4
    # And the other additions in the same program: R1 due on steps 1 and 3, augmentation.
    tiny_config.loss.r1_gamma, tiny_config.loss.r1_every = 10.0, 2
    tiny_config.loss.diff_augment = ("color", "translation", "cutout")
    tiny_config.model.spectral_norm_d = True
    built, step = compiled_step(tiny_config, devices[:1])
    first_u = host(built.state.d_spectral_u)
    state = built.state
    expected = host((state.g_params, state.g_batch_stats))
    assert jax.tree.all(jax.tree.map(np.array_equal, expected,
                                     host((state.ema_params, state.ema_batch_stats))))
    it = pipeline.create_train_iterator(built.config, 0, 1)
    for n in range(1, 4):
        before = host((state.g_params, state.d_params))
        state, metrics = step(state, next(it))
        assert (float(metrics["d_r1"]) > 0) == (n % 2 == 1), n
        if n == 1:
            after = host((state.g_params, state.d_params))
            moved = [max(np.abs(a - b).max() for a, b in zip(
                jax.tree.leaves(x), jax.tree.leaves(y), strict=True))
                for x, y in zip(after, before, strict=True)]
            np.testing.assert_allclose(moved, [1e-4, 4e-4], rtol=1e-3)
        decay = min(0.25, (1 + n) / (10 + n))
        expected = jax.tree.map(lambda e, w, d=decay: d * e + (1 - d) * w, expected,
                                host((state.g_params, state.g_batch_stats)))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                     host((state.ema_params, state.ema_batch_stats)), expected)
    kept = train_step._moving_average(built.recipe, state, state.g_params,
                                      state.g_batch_stats, jnp.array(False))
    assert jax.tree.all(jax.tree.map(np.array_equal, host(kept["ema_params"]),
                                     host(state.ema_params)))
    assert state.generator_variables().params is state.ema_params
    # One power-iteration vector per D kernel, moved by the steps.
    assert len(jax.tree.leaves(first_u)) == sum(
        path[-1].key == "kernel" for path, _ in jax.tree_util.tree_flatten_with_path(
            state.d_params)[0])
    assert not jax.tree.all(jax.tree.map(np.array_equal, first_u, host(state.d_spectral_u)))


def test_spectral_norm_estimates_the_largest_singular_value():
    """Power iteration's sigma against NumPy's SVD of the kernel as PyTorch reshapes it
    (out, k * k * in); the normalised kernel's largest singular value is then 1."""
    rng = np.random.default_rng(0)  # A spectrum with a gap, so 30 iterations converge.
    left, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    right, _ = np.linalg.qr(rng.normal(size=(48, 8)))
    matrix = left @ np.diag([5.0, 2.0, 1.5, 1.0, 0.8, 0.5, 0.3, 0.1]) @ right.T  # (out, m)
    kernel = jnp.asarray(matrix.T.reshape(4, 4, 3, 8), jnp.float32)
    params = {"layer": {"kernel": kernel, "bias": jnp.ones(8)}}
    vectors = spectral.init_vectors(params, jax.random.PRNGKey(1))
    for _ in range(30):
        vectors = spectral.power_iteration(params, vectors)
    largest = np.linalg.svd(np.asarray(kernel).reshape(-1, 8).T, compute_uv=False)[0]
    assert float(spectral.sigma(kernel, vectors["layer"]["kernel"])) == pytest.approx(
        largest, rel=1e-4)
    normalized = spectral.normalize(params, vectors)
    assert np.linalg.svd(np.asarray(normalized["layer"]["kernel"]).reshape(-1, 8).T,
                         compute_uv=False)[0] == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_array_equal(normalized["layer"]["bias"], params["layer"]["bias"])


def test_augmentation_is_one_transform_per_example_for_both_images_and_both_pairs():
    """Translation and cutout move and blank the condition and the image alike (a condition
    equal to the image stays equal); the same key is the same transform for a real and a fake
    image (both linear with zero fill: twice the image gives twice the result); colour
    changes the image only; the generator gets gradients through it."""
    key = jax.random.PRNGKey(3)
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 16, 16, 3), minval=-1, maxval=1)
    spatial = ("translation", "cutout")
    pair = augment.augment_pair(x, x, key, spatial)
    np.testing.assert_array_equal(pair[..., :3], pair[..., 3:])
    assert not np.array_equal(pair[..., 3:], x)
    real = augment.augment_pair(x, x, key, spatial)[..., 3:]
    fake = augment.augment_pair(x, 2 * x, key, spatial)[..., 3:]
    np.testing.assert_allclose(fake, 2 * real, rtol=1e-6)
    other = augment.augment_pair(x, x, jax.random.PRNGKey(4), spatial)
    assert not np.array_equal(other, pair)
    # Shifted by whole pixels with zeros coming in: the values are the image's or zero.
    values = set(np.asarray(x[0, ..., 0]).ravel()) | {0.0}
    assert set(np.unique(np.asarray(pair[0, ..., 0]))) <= values

    coloured = augment.augment_pair(x, x, key, ("color",))
    np.testing.assert_array_equal(coloured[..., :3], x)
    assert np.abs(coloured[..., 3:] - x).max() > 0.05
    grad = jax.grad(lambda image: augment.augment_pair(x, image, key, (*spatial, "color")
                                                       ).sum())(x)
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


def test_r1_is_the_squared_gradient_norm_of_d_on_real_images():
    """Against central finite differences of a small nonlinear discriminator, per example."""
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 4)) * 0.5

    def discriminate(image):
        y = jax.lax.conv_general_dilated(image, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(y)  # Logits, one per patch and channel.

    real = jax.random.uniform(jax.random.PRNGKey(2), (2, 5, 5, 2), minval=-1, maxval=1)
    got = float(losses.r1_penalty(discriminate, real))
    x = np.asarray(real, np.float64)
    norms, eps = np.zeros(len(x)), 1e-2
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        up = float(discriminate(jnp.asarray(x + step, jnp.float32)).sum())
        down = float(discriminate(jnp.asarray(x - step, jnp.float32)).sum())
        norms[index[0]] += ((up - down) / (2 * eps)) ** 2
    assert got == pytest.approx(norms.mean(), rel=2e-3)


@pytest.mark.slow
def test_reference_variant_is_the_2017_recipe(tiny_config, devices):
    """The pix2pix task configs ship the measured recipe (R1, no moving average), and every
    shipped task config's `:reference` switches each addition off, whatever the defaults; with
    them all on, `reference_recipe` gives back exactly the config without them, and a train
    step of that config gives the same losses as the plain recipe."""
    for name in shipped.names():
        module = shipped.sibling(str(shipped.config_folder() / "x.py"), name)
        if name == "tiny":  # A test config: no variants.
            continue
        shipped_recipe = module.get_config()
        if shipped_recipe.model.generator.startswith(("unet", "resnet")):  # pix2pix's.
            assert shipped_recipe.loss.r1_gamma == 0.01, name  # measured_recipe.
            assert shipped_recipe.model.ema_decay == 0.0, name
        config = module.get_config("reference")
        assert (config.model.ema_decay == config.optimizer.d_learning_rate
                == config.loss.r1_gamma == 0 and not config.loss.diff_augment
                and not config.model.spectral_norm_d), name
        assert config.model.eval_mode is False, name  # Tested per image, as the reference.
    from configs import super_resolution  # R1 held D at chance on its near-bicubic outputs.

    assert super_resolution.get_config("gan").loss.r1_gamma == 0.0
    plain = tiny_config.copy_and_resolve_references()
    plain.model.eval_mode = False
    tiny_config.model.ema_decay = 0.999
    tiny_config.optimizer.d_learning_rate = 8e-4
    tiny_config.loss.diff_augment = ("translation",)
    tiny_config.loss.r1_gamma = 1.0
    tiny_config.model.spectral_norm_d = True
    defaults.reference_recipe(tiny_config)
    assert tiny_config.to_dict() == plain.to_dict()
    batch = next(pipeline.create_train_iterator(plain, 0, 1))
    losses = []
    for config in (plain, tiny_config):
        built, step = compiled_step(config, devices[:1])
        losses.append(jax.device_get(step(built.state, batch)[1]))
    assert losses[0] == losses[1]


def test_best_checkpoints_keep_the_top_scores_and_serve_step_best(tmp_path, devices):
    """A scripted sequence of eval/l1 values: the `keep_best` lowest are kept beside nothing
    else, the log names each new best, a resume drops the best steps it will redo, and
    --step=best restores the best one's generator."""
    config = defaults.get_config()
    config.checkpoint.best_metric = "eval/l1"
    config.checkpoint.keep_best = 2
    config.checkpoint.async_save = False
    device = jax.sharding.SingleDeviceSharding(devices[0])

    def state(value):
        return {"g_params": {"w": jax.device_put(np.full((3,), value, np.float32), device)},
                "g_batch_stats": {}}

    scores = {10: 0.5, 20: 0.3, 30: 0.4, 40: 0.6, 50: 0.2, 60: 0.35}
    best = checkpointing.BestCheckpoints(str(tmp_path), config, start_step=0)
    logged = []
    with absl_capture(logged):
        for step, value in scores.items():
            best.offer(step, state(value), {"l1": value, "psnr": 1.0})
        best.offer(70, state(0.1), {"psnr": 1.0})  # No score: not a candidate.
        best.offer(80, state(0.1), {"l1": float("nan")})
    best.close()
    assert sorted(best.manager.all_steps()) == [20, 50]
    assert [line.split("step ")[1].split(" ")[0] for line in logged
            if "best checkpoint so far" in line] == ["10", "20", "50"]

    target = {"g_params": {"w": jax.ShapeDtypeStruct((3,), jnp.float32, sharding=device)},
              "g_batch_stats": {}}
    variables, step = checkpointing.restore_generator(str(tmp_path), target, "best",
                                                      config.checkpoint)
    assert step == 50 and np.all(np.asarray(variables["g_params"]["w"]) == np.float32(0.2))

    resumed = checkpointing.BestCheckpoints(str(tmp_path), config, start_step=30)
    assert sorted(resumed.manager.all_steps()) == [20]  # Step 50 is redone after 30.
    resumed.close()
    config.checkpoint.best_metric = ""
    with pytest.raises(checkpointing.CheckpointError, match="kept no best checkpoints"):
        checkpointing.restore_generator(str(tmp_path), target, "best", config.checkpoint)


class _Collect(logging.Handler):
    def __init__(self, lines):
        super().__init__()
        self.lines = lines

    def emit(self, record):
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def absl_capture(lines):
    """Collects absl's log lines into `lines` while in the `with`."""
    handler, verbosity = _Collect(lines), absl_logging.get_verbosity()
    absl_logging.get_absl_logger().addHandler(handler)
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)
        absl_logging.get_absl_logger().removeHandler(handler)


def test_instability_warning_once_per_sustained_episode():
    """A scripted loss sequence: short dips are ignored, a stretch of window_steps warns once
    (naming the step it began), recovery resets, and multi-scale D scales the floor."""
    watch = monitor.InstabilityWatch(window_steps=100, d_loss_floor=0.05, g_gan_ceiling=8.0)
    healthy, collapsed, diverged = ({"d_loss": 0.6, "g_gan": 1.0}, {"d_loss": 0.01, "g_gan": 5.0},
                                    {"d_loss": 0.3, "g_gan": 12.0})
    sequence = ([healthy] * 3 + [collapsed] * 2 + [healthy] + [collapsed] * 4 + [healthy] * 2
                + [diverged] * 3)
    lines, flags = [], []
    with absl_capture(lines):
        for i, scalars in enumerate(sequence):
            flags.append(watch.update(50 * (i + 1), scalars))
    assert flags == [0] * 8 + [1, 1] + [0] * 4 + [1]
    warnings = [line for line in lines if "unstable" in line]
    assert len(warnings) == 2
    assert "since step 350" in warnings[0] and "discriminator's loss" in warnings[0]
    assert "since step 650" in warnings[1] and "diverges" in warnings[1]

    config = defaults.get_config()
    config.model.discriminator, config.model.num_d = "multiscale", 3
    assert monitor.InstabilityWatch.from_config(config).d_loss_floor == pytest.approx(0.15)
    config.monitor.window_steps = 0
    off = monitor.InstabilityWatch.from_config(config)
    assert [off.update(50 * i, collapsed) for i in range(1, 20)] == [0.0] * 19
