"""Model shapes, parameter counts against the reference, and the upsampling equivalence."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax.models import layers
from p2p_jax.models.discriminators import NLayerDiscriminator, PixelDiscriminator
from p2p_jax.models.resnet import ResnetGenerator
from p2p_jax.models.unet import UNetGenerator
from p2p_jax.ops.one_hot import OneHotMap


def param_count(module: nn.Module, shape) -> int:
    variables = jax.eval_shape(
        lambda: module.init({"params": jax.random.key(0)}, jnp.zeros(shape), train=False))
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("module,shape,expected", [
    (UNetGenerator(num_downs=8), (1, 256, 256, 3), 54_413_955),  # unet_256, REFERENCE.md.
    (NLayerDiscriminator(n_layers=3), (1, 256, 256, 6), 2_768_705),  # basic, REFERENCE.md.
    # resnet_9blocks with the reference's affine-free instance norm (CycleGAN's generator).
    (ResnetGenerator(num_blocks=9, norm="instance"), (1, 256, 256, 3), 11_378_179),
])
def test_parameter_counts_match_reference(module, shape, expected):
    assert param_count(module, shape) == expected


def test_unet_layer_layout():
    """Bias only where no batch norm follows; no norm on the outermost/innermost down conv."""
    variables = jax.eval_shape(lambda: UNetGenerator(num_downs=5, ngf=8).init(
        {"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), train=False))
    params = variables["params"]
    assert "bias" not in params["down_0"] and "bias" not in params["up_1"]
    assert "bias" in params["up_0"]
    assert "down_0_norm" not in params and "down_4_norm" not in params
    assert {"down_1_norm", "down_3_norm", "up_4_norm", "up_1_norm"} <= set(params)
    assert params["down_4"]["kernel"].shape == (4, 4, 64, 64)  # 8 * min(2**4, 8).
    assert params["up_0"]["kernel"].shape == (4, 4, 16, 3)  # Skip-concatenated input.


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_generators_and_discriminators_shapes(norm):
    key = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    x = jnp.zeros((2, 32, 32, 1))
    for gen in (UNetGenerator(output_channels=3, num_downs=5, ngf=8, norm=norm),
                ResnetGenerator(output_channels=3, num_blocks=2, ngf=8, norm=norm)):
        variables = jax.jit(gen.init, static_argnames="train")(key, x, train=False)
        y, _ = jax.jit(lambda v, x, g=gen: g.apply(v, x, train=True, rngs=key,
                                                   mutable=["batch_stats"]))(variables, x)
        assert y.shape == (2, 32, 32, 3)
        assert float(jnp.max(jnp.abs(y))) <= 1.0
    pair = jnp.zeros((2, 64, 64, 4))
    for disc, out in ((NLayerDiscriminator(3, 8, norm), (2, 6, 6, 1)),
                      (NLayerDiscriminator(2, 8, norm), (2, 14, 14, 1)),
                      (PixelDiscriminator(8, norm), (2, 64, 64, 1))):
        shape = jax.eval_shape(lambda d=disc: d.init_with_output(key, pair, train=False)[0])
        assert shape.shape == out


def test_patchgan_output_is_30x30_at_256():
    disc = NLayerDiscriminator(3, 8, "batch")
    shape = jax.eval_shape(lambda: disc.init_with_output(
        {"params": jax.random.key(0)}, jnp.zeros((1, 256, 256, 6)), train=False)[0])
    assert shape.shape == (1, 30, 30, 1)


def test_init_statistics():
    variables = jax.jit(UNetGenerator(num_downs=8).init, static_argnames="train")(
        {"params": jax.random.key(0)}, jnp.zeros((1, 256, 256, 3)), train=False)
    kernel = variables["params"]["down_5"]["kernel"]
    scale = variables["params"]["down_5_norm"]["scale"]
    assert abs(float(kernel.std()) - 0.02) < 0.001 and abs(float(kernel.mean())) < 0.001
    assert abs(float(scale.mean()) - 1.0) < 0.01 and 0.01 < float(scale.std()) < 0.03
    assert float(jnp.abs(variables["params"]["up_0"]["bias"]).max()) == 0.0


def test_dropout_only_in_training_mode():
    # num_downs - 5 = 1 block with dropout, as in the reference.
    gen = UNetGenerator(num_downs=6, ngf=4, norm="instance")
    x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
    variables = jax.jit(functools.partial(gen.init, train=False))({"params": jax.random.key(0)}, x)
    train_apply = jax.jit(lambda key: gen.apply(variables, x, train=True, rngs={"dropout": key}))
    a, b = train_apply(jax.random.key(1)), train_apply(jax.random.key(2))
    assert not np.allclose(a, b)
    no_dropout = UNetGenerator(num_downs=6, ngf=4, norm="instance", dropout_rate=0.0)
    c = jax.jit(functools.partial(no_dropout.apply, train=True))(variables, x)
    d = jax.jit(functools.partial(gen.apply, train=False))(variables, x)
    np.testing.assert_allclose(c, d, atol=1e-6)


def test_upsample_modes_and_implementations_share_parameters():
    """Every implementation of the transposed conv reads the same parameters and gives the
    same output; the resize-conv variant has its own 3x3 conv."""
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
    ups = {impl: layers.Upsample2x(5, impl=impl) for impl in ("xla", "cpu")}
    variables = ups["cpu"].init(jax.random.key(1), x)
    np.testing.assert_allclose(ups["xla"].apply(variables, x), ups["cpu"].apply(variables, x),
                               atol=1e-5)
    resize = layers.Upsample2x(5, mode="resize_bilinear")
    assert resize.apply(resize.init(jax.random.key(1), x), x).shape == (2, 8, 8, 5)
    with pytest.raises(ValueError, match="model.upsample"):
        layers.Upsample2x(5, mode="pixelshuffle").init(jax.random.key(1), x)


def test_a_checkpoint_of_one_implementation_runs_on_the_other():
    """Parameters do not depend on the implementation, so a CPU-trained generator serves on
    XLA's forms (what exports use) with the same outputs."""
    x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
    cpu_net, xla_net = (UNetGenerator(num_downs=5, ngf=8, conv_impl=impl)
                        for impl in ("cpu", "xla"))
    variables = jax.jit(functools.partial(cpu_net.init, train=False))(
        {"params": jax.random.key(1)}, x)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
        jnp.shape, jax.eval_shape(functools.partial(xla_net.init, train=False),
                                  {"params": jax.random.key(1)}, x))
    outputs = [jax.jit(functools.partial(net.apply, train=False))(variables, x)
               for net in (cpu_net, xla_net)]
    np.testing.assert_allclose(*outputs, atol=1e-5)


@pytest.mark.parametrize("generator", [
    UNetGenerator(num_downs=5, ngf=4, norm="instance", dropout_rate=0.0),
    ResnetGenerator(num_blocks=1, ngf=4, norm="instance", dropout_rate=0.0),
], ids=["unet", "resnet"])
def test_pix2pix_generators_take_a_label_map_kept_as_ids(generator):
    """Label maps also feed the pix2pix generators (dataset.label_nc): their first layer as
    lookups on the ids gives what XLA's convolution of the dense one-hot tensor gives."""
    rng = np.random.default_rng(0)
    labels = OneHotMap.encode(jnp.asarray(rng.integers(0, 8, size=(2, 32, 32))), 7)
    on_ids = generator.clone(conv_impl="cpu")
    params = jax.jit(functools.partial(generator.init, train=False))(
        {"params": jax.random.key(0)}, labels.dense())
    np.testing.assert_allclose(
        jax.jit(functools.partial(on_ids.apply, train=True))(params, labels),
        jax.jit(functools.partial(generator.apply, train=True))(params, labels.dense()),
        atol=1e-5)


@pytest.mark.parametrize("plain", [UNetGenerator(num_downs=5, ngf=8, dropout_rate=0.0),
                                   ResnetGenerator(num_blocks=1, ngf=8, dropout_rate=0.0)],
                         ids=["unet", "resnet"])
def test_a_residual_generator_adds_its_input_with_the_same_parameters(plain):
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
    variables = plain.init({"params": jax.random.key(0)}, x, train=False)
    residual = plain.clone(residual=True)
    assert jax.tree.structure(residual.init({"params": jax.random.key(0)}, x, train=False)) == (
        jax.tree.structure(variables))
    correction = np.asarray(plain.apply(variables, x, train=False))
    out = np.asarray(residual.apply(variables, x, train=False))
    np.testing.assert_allclose(out, np.clip(np.asarray(x) + correction, -1, 1), atol=1e-6)
    from p2p_jax.errors import ConfigError

    with pytest.raises(ConfigError, match="input has 1 channels and the output 3; set "
                                          "dataset.input_channels=3 or model.residual=False"):
        residual.init({"params": jax.random.key(0)}, x[..., :1], train=False)
