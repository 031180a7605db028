"""pix2pixHD in the trainer: its networks' parameter counts and shapes, its losses against
NumPy, label and instance maps, its folder layouts, the joint update against a plain
iteration, the frozen coarse branch, init_from, and a tiny end-to-end run that resumes exactly
and evaluates."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cityscapes_hd
from p2p_jax import checkpointing, ops, parallel
from p2p_jax.data import images, labels, pipeline, sources, transforms, values
from p2p_jax.eval import report, summaries
from p2p_jax.models import generation, vgg
from p2p_jax.models.generation import Generator, GeneratorVariables
from p2p_jax.models.pix2pixhd import (
    GlobalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
    downsample,
)
from p2p_jax.ops import OneHotMap
from p2p_jax.serving import restore
from p2p_jax.train import loop, losses
from p2p_jax.train import state as train_state
from p2p_jax.train import step as train_step
from tests.helpers import (
    once_per_test_run,
    vgg19_layers,
    write_cityscapes,
    write_png,
    write_vgg19_weights,
)


def param_count(module: nn.Module, shape) -> int:
    variables = jax.eval_shape(
        lambda: module.init({"params": jax.random.key(0)}, jnp.zeros(shape), train=False))
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


# Counted by benchmarks/torch_pix2pixhd.py --count (a transcription of pix2pixHD's
# networks.py in PyTorch) for Cityscapes' options: 35 label ids + the instance-boundary
# channel in, RGB out; the discriminators see those 36 channels and the photo.
@pytest.mark.parametrize("module,channels,expected", [
    (GlobalGenerator(3, ngf=64, n_downsampling=4, n_blocks=9), 36, 182_546_755),
    (LocalEnhancer(3, ngf=32, n_downsample_global=4, n_blocks_global=9, n_local_enhancers=1,
                   n_blocks_local=3), 36, 182_857_059),
    (MultiscaleDiscriminator(ndf=64, n_layers=3, num_d=2), 39, 5_603_202),
    (MultiscaleDiscriminator(ndf=64, n_layers=3, num_d=3), 39, 8_404_803),
], ids=["global", "local", "D num_D=2", "D num_D=3"])
def test_parameter_counts_match_pix2pixhd(module, channels, expected):
    assert param_count(module, (1, 64, 128, channels)) == expected


def test_every_discriminator_scale_returns_its_layer_outputs():
    disc = MultiscaleDiscriminator(ndf=8, n_layers=3, num_d=3)
    outputs = jax.eval_shape(lambda: disc.init_with_output(
        {"params": jax.random.key(0)}, jnp.zeros((2, 64, 128, 5)), train=False)[0])
    assert len(outputs) == 3
    height, width = 64, 128
    for scale in outputs:  # Finest first; each 4x4 conv with padding 2.
        h, w, expected = height, width, []
        for channels, stride in [(8, 2), (16, 2), (32, 2), (64, 1), (1, 1)]:
            h, w = (h + 4 - 4) // stride + 1, (w + 4 - 4) // stride + 1
            expected.append((2, h, w, channels))
        assert [o.shape for o in scale] == expected
        height, width = (height + 1) // 2, (width + 1) // 2  # The 3x3/2 average pool.


def test_pyramid_pool_excludes_padding():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    got = np.asarray(downsample(jnp.asarray(x)))[0, :, :, 0]
    # Windows centred on (0, 0), (0, 2), (2, 0), (2, 2); padding cells are not counted.
    want = [[x[0, 0:2, 0:2].mean(), x[0, 0:2, 1:4].mean()],
            [x[0, 1:4, 0:2].mean(), x[0, 1:4, 1:4].mean()]]
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("impl", ["xla", "cpu"])
def test_instance_norm_and_its_hand_written_gradient_match_autodiff(impl):
    """Both forms (autodiff's backward, and the CPU form's written from the output) compute
    PyTorch's InstanceNorm2d and its gradient."""
    x = np.random.default_rng(0).normal(2.0, 3.0, (2, 5, 7, 3)).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    want = (x - mean) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(np.asarray(ops.instance_norm(jnp.asarray(x), impl)), want,
                               atol=2e-6)

    def autodiff(v):
        mu = v.mean(axis=(1, 2), keepdims=True)
        return (v - mu) * jax.lax.rsqrt(((v - mu) ** 2).mean(axis=(1, 2), keepdims=True) + 1e-5)

    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)
    ours = jax.grad(lambda v: jnp.sum(ops.instance_norm(v, impl) * cotangent))(jnp.asarray(x))
    theirs = jax.grad(lambda v: jnp.sum(autodiff(v) * cotangent))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-5)
    half = ops.instance_norm(jnp.asarray(x, jnp.bfloat16), impl)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), want, atol=0.05)


def test_instance_norm_keeps_only_its_bfloat16_input_for_the_backward_pass():
    """The TPU/GPU form recomputes its float32 statistics in the backward pass: what it keeps
    is its input (autodiff alone keeps x - mean and more in float32; compiled for TPU v5e the
    2048x1024 pix2pixHD step needed 13.42 GB so, 10.21 GB now)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 7, 3)), jnp.bfloat16)
    _, backward = jax.vjp(lambda v: ops.instance_norm(v, "xla"), x)
    assert [(r.dtype, r.shape) for r in jax.tree.leaves(backward)] == [(jnp.bfloat16, x.shape)]


def test_vgg_max_pool_floors_odd_sizes_and_routes_the_gradient_to_the_maximum():
    x = np.random.default_rng(2).normal(size=(1, 5, 7, 2)).astype(np.float32)
    got = np.asarray(vgg.max_pool_2x2(jnp.asarray(x)))
    want = x[:, :4, :6].reshape(1, 2, 2, 3, 2, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(got, want)
    grad = np.asarray(jax.grad(lambda v: vgg.max_pool_2x2(v).sum())(jnp.asarray(x)))
    windows = x[:, :4, :6].reshape(1, 2, 2, 3, 2, 2)
    mask = np.zeros_like(x)
    mask[:, :4, :6] = (windows == windows.max(axis=(2, 4), keepdims=True)).reshape(1, 4, 6, 2)
    np.testing.assert_array_equal(grad, mask)  # Rows and columns past the floor get none.


def test_one_hot_and_instance_boundaries():
    instances = np.array([[1, 1, 2],
                          [1, 1, 2],
                          [3, 3, 3]])
    # Both pixels of every 4-neighbour pair that differs; only (0, 0) has none.
    np.testing.assert_array_equal(labels.instance_boundaries(instances)[..., 0],
                                  [[0, 1, 1],
                                   [1, 1, 1],
                                   [1, 1, 1]])
    flat = np.array([[5, 5], [5, 5]])
    assert labels.instance_boundaries(flat).sum() == 0
    generator = Generator(GlobalGenerator(dtype=jnp.bfloat16), label_nc=4, instance_maps=True)
    ids = np.array([[[[0], [3]], [[2], [1]]]], np.uint8)
    edges = np.array([[[[1], [0]], [[0], [1]]]], np.uint8)
    encoded = generation.encode_input(generator, {"A": ids, "E": edges})
    assert encoded.shape == (1, 2, 2, 5) and encoded.dtype == jnp.bfloat16  # 0/1 are exact.
    as_ids = generation.encode_input(dataclasses.replace(generator, label_lookups=True),
                                     {"A": ids, "E": edges})
    assert isinstance(as_ids, OneHotMap)
    np.testing.assert_array_equal(as_ids.dense(jnp.bfloat16), encoded)
    encoded = np.asarray(encoded, np.float32)
    np.testing.assert_array_equal(encoded[0, 0, 1], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(encoded[0, 1, 1], [0, 1, 0, 0, 1])


@pytest.mark.slow
def test_a_label_map_kept_as_ids_gives_the_dense_one_hot_result():
    """The generator on a OneHotMap (its head as lookups on CPU, its pooled scale dense) gives
    what it gives on the dense one-hot tensor through XLA's convolutions: values and gradients,
    and per-image generation (each image a batch of one)."""
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, 6, size=(2, 16, 24)), jnp.uint8)
    edges = jnp.asarray(rng.integers(0, 2, size=(2, 16, 24)), jnp.uint8)
    labels = OneHotMap.encode(ids, 5, edges)
    small = dict(ngf=4, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=1,
                 n_blocks_local=1)
    on_ids, on_dense = LocalEnhancer(conv_impl="cpu", **small), LocalEnhancer(**small)
    params = jax.jit(functools.partial(on_dense.init, train=False))(
        {"params": jax.random.key(0)}, labels.dense())["params"]

    def loss(module, params, x):
        return jnp.sum(jnp.sin(3 * module.apply({"params": params}, x, train=True)))

    # Jitted as the trainer runs them (op by op, the two networks take a minute on a CPU).
    loss_ids, loss_dense = (jax.jit(jax.value_and_grad(functools.partial(loss, module)))
                            for module in (on_ids, on_dense))
    (value_ids, grads_ids), (value_dense, grads_dense) = (loss_ids(params, labels),
                                                          loss_dense(params, labels.dense()))
    np.testing.assert_allclose(value_ids, value_dense, rtol=1e-4)
    assert relative_difference(grads_ids, grads_dense) < 1e-4
    generator = Generator(on_ids, label_nc=5, instance_maps=True, label_lookups=True)
    generated = generation.generate(generator, GeneratorVariables(params, {}),
                                    {"A": ids[..., None], "E": edges[..., None]}, None)
    apply_dense = jax.jit(functools.partial(on_dense.apply, train=True))
    for i in range(2):
        alone = apply_dense({"params": params}, labels.dense()[i:i + 1])
        np.testing.assert_allclose(generated[i], alone[0], atol=1e-5)


def test_label_maps_resize_by_nearest_neighbour():
    ids = np.array([[1, 2], [3, 4]], np.uint8)[:, :, None]
    out = transforms.preprocess({"A": ids, "I": ids[..., 0].astype(np.int32)},
                                np.random.default_rng(0), "scale_width", 4, (4, 4), False,
                                frozenset({"A", "I"}))
    np.testing.assert_array_equal(out["A"][..., 0], [[1, 1, 2, 2], [1, 1, 2, 2],
                                                     [3, 3, 4, 4], [3, 3, 4, 4]])
    assert out["I"].dtype == np.int32


def naive_vgg(params, image, normalize=True):
    """VGG19's features in NumPy, layer by layer as torchvision's `features` runs them (3x3
    convs as nine shifted matmuls), taken at the ends of pix2pixHD's slices [0:2], [2:7],
    [7:12], [12:21], [21:30]."""
    x = image.astype(np.float64)
    if normalize:
        x = ((x + 1) / 2 - np.array(vgg.IMAGENET_MEAN)) / np.array(vgg.IMAGENET_STD)
    weights = {name: layer for stage in params.values() for name, layer in stage.items()}
    features = []
    for index, item in vgg19_layers():
        if item == "M":
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        else:
            layer = weights[f"features_{index}"]
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            h, w = x.shape[1:3]
            x = sum(padded[:, i:i + h, j:j + w] @ np.asarray(layer["kernel"][i, j], np.float64)
                    for i in range(3) for j in range(3)) + np.asarray(layer["bias"])
            x = np.maximum(x, 0)
            if index + 2 in (2, 7, 12, 21, 30):  # The ReLU at index + 1 ends a slice.
                features.append(x)
    return features


def test_vgg_loss_from_a_weights_file_matches_numpy(tmp_path):
    params = vgg.load_params(write_vgg19_weights(tmp_path / "vgg19.pth"))
    rng = np.random.default_rng(0)
    fake, real = (rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(2))
    net = vgg.VGG19Features()
    ours = losses.perceptual(net.apply({"params": params}, fake),
                             net.apply({"params": params}, real))
    want = sum(w * np.abs(f - r).mean() for w, f, r in zip(
        losses.VGG_WEIGHTS, naive_vgg(params, fake), naive_vgg(params, real), strict=True))
    assert float(ours) == pytest.approx(want, rel=1e-4)
    with pytest.raises(FileNotFoundError, match="vgg19-dcbb9e9d.pth"):
        vgg.load_params(str(tmp_path / "missing.pth"))


def test_feature_matching_and_summed_gan_losses_match_numpy():
    rng = np.random.default_rng(1)
    shapes = [(1, 4, 4, 2), (1, 2, 2, 3), (1, 2, 2, 1)]
    fake = [[jnp.asarray(rng.normal(size=s)) for s in shapes] for _ in range(2)]
    real = [[jnp.asarray(rng.normal(size=s)) for s in shapes] for _ in range(2)]
    want = sum(0.5 * (4 / 2) * np.abs(np.asarray(f) - np.asarray(r)).mean()
               for fs, rs in zip(fake, real, strict=True)
               for f, r in zip(fs[:-1], rs[:-1], strict=True))
    assert float(losses.feature_matching(fake, real)) == pytest.approx(want, rel=1e-5)
    g = sum(((np.asarray(scale[-1]) - 1) ** 2).mean() for scale in fake)
    assert float(losses.generator_gan_loss("lsgan", fake)) == pytest.approx(g, rel=1e-5)


def test_cityscapes_and_pix2pixhd_folder_layouts(tmp_path):
    root = write_cityscapes(tmp_path / "cityscapes", frames=3, height=8, width=16)
    (root / "leftImg8bit" / "train" / "aachen" / "aachen_999999_000019_leftImg8bit.png"
     ).write_bytes(images.encode(np.zeros((8, 16, 3), np.uint8)))  # No labels: left out.
    source = sources.cityscapes_folder(str(root), "train", instance_maps=True)
    assert [source.name(i) for i in range(len(source))] == [
        "aachen_000000_000019", "aachen_000002_000019", "bochum_000001_000019"]
    example = source[0]
    assert example["A"].shape == (8, 16, 1) and example["B"].shape == (8, 16, 3)
    assert example["I"].dtype == np.int32 and example["I"].max() == 26001  # Not rescaled.
    assert set(np.unique(example["A"])) <= {7, 23, 26}

    hd = tmp_path / "pix2pixhd"
    for i in range(2):
        write_png(hd / "train_label" / f"{i}_label.png", np.full((8, 16), i + 3, np.uint8))
        write_png(hd / "train_inst" / f"{i}_inst.png", np.full((8, 16), 1000, np.uint16))
        write_png(hd / "train_img" / f"{i}.png", np.full((8, 16, 3), 9, np.uint8))
    paired = sources.pix2pixhd_folder(str(hd), "train", label_nc=35, instance_maps=True)
    assert len(paired) == 2 and int(paired[1]["A"][0, 0, 0]) == 4
    assert int(paired[1]["I"][0, 0]) == 1000
    (hd / "train_img" / "2.png").write_bytes(images.encode(np.zeros((8, 16, 3), np.uint8)))
    with pytest.raises(sources.DatasetError, match="must hold as many"):
        sources.pix2pixhd_folder(str(hd), "train", label_nc=35, instance_maps=True)


def tiny_hd_config(data, vgg_weights, generator="global"):
    config = cityscapes_hd.get_config("local" if generator == "local" else "")
    config.dataset.path = str(data)
    config.loss.vgg_weights = vgg_weights
    config.dataset.image_size = (32, 64)
    config.dataset.load_size = 64
    config.model.ngf = 4 if generator == "local" else 8
    config.model.ndf = 4
    config.model.n_downsample_global = 2
    config.model.n_blocks_global = 1
    config.model.n_blocks_local = 1
    config.model.remat = "blocks"
    config.dtype = "float32"
    config.batch_size = 8  # The 8 test devices.
    config.num_train_steps = 4
    config.optimizer.constant_steps = 2
    config.optimizer.decay_steps = 4
    config.log_every_steps = 2
    config.sample_every_steps = 100
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 2
    config.eval.batch_size = 8
    config.eval.num_examples = 2
    config.num_sample_images = 2
    config.model.init_from = ""
    config.optimizer.fix_global_steps = 0
    return config


@pytest.fixture(scope="module")
def hd_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    write_cityscapes(root, "train", frames=4, height=32, width=64)
    write_cityscapes(root, "val", frames=2, height=32, width=64, seed=1)
    return root, write_vgg19_weights(root / "vgg19.pth")


def naive_joint_step(setup, state, batch):
    """pix2pixHD's iteration written plainly: both losses, and both networks' gradients, from
    the networks before the step, each loss through its own D passes."""
    recipe, frozen = setup.recipe, setup.frozen
    cond = generation.encode_input(recipe.generator, batch)
    real = generation.to_float(batch["B"], values.UINT8)
    rng = jax.random.fold_in(state.rng, state.step)

    def d_apply(params, image):
        return generation.apply_network(recipe.discriminator, params, {},
                                        jnp.concatenate([ops.as_array(cond), image], -1), True)[0]

    def fake_of(g_params):
        return generation.apply_network(recipe.generator.network, g_params, {}, cond, True,
                                        rng)[0]

    def d_loss(d_params):
        fake = jax.lax.stop_gradient(fake_of(state.g_params))
        loss_real, loss_fake = losses.discriminator_loss(recipe.gan_mode, d_apply(d_params, real),
                                                         d_apply(d_params, fake))
        return 0.5 * (loss_real + loss_fake)

    def g_loss(g_params):
        fake = fake_of(g_params)
        fake_out, real_out = d_apply(state.d_params, fake), d_apply(state.d_params, real)
        features = functools.partial(recipe.perceptual.apply, {"params": frozen["vgg"]})
        return (losses.generator_gan_loss(recipe.gan_mode, fake_out)
                + recipe.lambda_feat * losses.feature_matching(fake_out, real_out)
                + recipe.lambda_vgg * losses.perceptual(features(fake), features(real)))

    d_value, d_grads = jax.value_and_grad(d_loss)(state.d_params)
    g_value, g_grads = jax.value_and_grad(g_loss)(state.g_params)
    return d_value, g_value, d_grads, g_grads


def relative_difference(a, b) -> float:
    """||a - b|| / ||a|| over whole pytrees (biases before an instance norm have gradients
    of float noise, which Adam's first step would blow up to full steps element by element)."""
    squares = jax.tree.map(lambda x, y: float(np.sum((np.asarray(x, np.float64) - y) ** 2)), a, b)
    norms = jax.tree.map(lambda x: float(np.sum(np.asarray(x, np.float64) ** 2)), a)
    return (sum(jax.tree.leaves(squares)) / sum(jax.tree.leaves(norms))) ** 0.5


@pytest.mark.slow
def test_joint_update_matches_the_plain_pix2pixhd_iteration(hd_data, devices):
    config = tiny_hd_config(*hd_data)
    config.model.remat = "none"
    setup = train_state.build(config, devices=devices[:1])
    assert setup.recipe.generator.label_lookups  # One CPU device: label maps as lookups.
    batch = parallel.global_batch(next(pipeline.create_train_iterator(setup.config, 0, 1)),
                                  setup.mesh)
    d_loss, g_loss, d_grads, g_grads = jax.jit(functools.partial(naive_joint_step, setup))(
        setup.state, batch)
    new_state, metrics = jax.jit(functools.partial(train_step.train_step, setup.recipe))(
        setup.state, batch, setup.frozen)
    assert float(metrics["d_loss"]) == pytest.approx(float(d_loss), rel=1e-5)
    assert float(metrics["g_loss"]) == pytest.approx(float(g_loss), rel=1e-5)
    assert {"g_feat", "g_vgg"} <= set(metrics)
    # Adam's first moment after one step is (1 - b1) * gradient: the step's gradients.
    for moments, grads in ((new_state.d_opt_state[0].mu, d_grads),
                           (new_state.g_opt_state[0].mu, g_grads)):
        ours = jax.tree.map(lambda m: np.asarray(m) / 0.5, moments)
        assert relative_difference(grads, ours) < 1e-4


def test_label_lookups_only_in_the_cpu_form_with_one_device_per_process(hd_data, devices):
    config = tiny_hd_config(*hd_data)
    one, eight = parallel.create_mesh(config.mesh, devices[:1]), parallel.create_mesh(
        config.mesh, devices)
    assert ops.uses_label_lookups("cpu", one, jnp.float32)
    assert not ops.uses_label_lookups("xla", one, jnp.float32)
    assert not ops.uses_label_lookups("cpu", eight, jnp.float32)
    assert not ops.uses_label_lookups("cpu", one, jnp.bfloat16)
    config.dataset.label_nc = 0
    config.dataset.instance_maps = False
    assert not train_state.Recipe.from_config(config, "cpu", True).generator.label_lookups


@pytest.fixture
def global_runs(hd_data, tmp_path_factory, worker_id):
    """(config, interrupted, straight): a global run of 4 steps on the 8 test devices, once
    stopped at step 2 and resumed, once straight, made once per test run; the local
    enhancer's test starts from it."""
    config = tiny_hd_config(*hd_data)

    def train(root):
        config.num_train_steps = 2
        loop.train_and_evaluate(config, str(root / "interrupted"))
        config.num_train_steps = 4
        loop.train_and_evaluate(config, str(root / "interrupted"))
        loop.train_and_evaluate(config, str(root / "straight"))

    root = once_per_test_run(tmp_path_factory, worker_id, "pix2pixhd_global_runs", train)
    config.num_train_steps = 4
    return config, str(root / "interrupted"), str(root / "straight")


# One worker runs both, so the global runs are trained once.
@pytest.mark.slow
@pytest.mark.xdist_group("pix2pixhd_runs")
def test_global_run_trains_resumes_exactly_and_evaluates(global_runs):
    config, interrupted, straight = global_runs
    a, b = checkpointing.load_train_state(interrupted), checkpointing.load_train_state(straight)
    assert int(a["step"]) == 4
    jax.tree.map(np.testing.assert_array_equal, a, b)
    series = summaries.read_scalars(straight)
    assert {"train/g_feat", "train/g_vgg", "eval/psnr"} <= set(series)
    folder = report.evaluate_checkpoint(restore.restore(config, straight), straight)
    assert (folder / "index.html").exists()
    shown = images.read(str(next((folder / "images").glob("*_input.png"))))
    assert shown.shape == (32, 64, 3) and shown.max() > 100  # Label ids drawn in colours.


@pytest.mark.slow
@pytest.mark.xdist_group("pix2pixhd_runs")
def test_local_run_starts_from_the_global_run_and_frees_the_coarse_branch(hd_data, global_runs,
                                                                         tmp_path, devices):
    """init_from maps the global generator into the coarse branch; the branch stays
    bit-identical through fix_global_steps, then trains; resume inside the frozen phase is
    exact. On one device, so the label map convolves as lookups (the CPU form) end to end;
    the global run trained the dense form on eight."""
    one = devices[:1]
    global_workdir = global_runs[2]
    source = checkpointing.load_train_state(global_workdir)

    config = tiny_hd_config(*hd_data, generator="local")
    config.model.init_from = global_workdir
    config.optimizer.fix_global_steps = 2
    config.checkpoint_every_steps = 1
    config.checkpoint.max_to_keep = 5
    workdir = str(tmp_path / "local")
    config.num_train_steps = 1  # Stop inside the frozen phase; resume to the end.
    loop.train_and_evaluate(config, workdir, one)
    config.num_train_steps = 3
    loop.train_and_evaluate(config, workdir, one)
    states = [checkpointing.load_train_state(workdir, step) for step in (1, 2, 3)]
    coarse = {k: v for k, v in source["g_params"].items() if k != "tail"}
    for state in states[:2]:  # Frozen: exactly the global run's weights.
        jax.tree.map(np.testing.assert_array_equal, state["g_params"]["global"], coarse)
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), states[2]["g_params"]["global"],
                         coarse)
    assert any(jax.tree.leaves(moved))
    enhancer = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                            states[0]["g_params"]["enhancer_1"],
                            states[1]["g_params"]["enhancer_1"])
    assert any(jax.tree.leaves(enhancer))  # The enhancer trains from the first step.

    straight = str(tmp_path / "straight")
    loop.train_and_evaluate(config, straight, one)
    jax.tree.map(np.testing.assert_array_equal, checkpointing.load_train_state(straight),
                 states[2])

