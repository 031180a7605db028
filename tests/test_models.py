"""Model shapes, parameter counts against the reference, and the upsampling equivalence."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax.models import layers, stride2
from p2p_jax.models.discriminators import NLayerDiscriminator, PixelDiscriminator
from p2p_jax.models.resnet import ResnetGenerator
from p2p_jax.models.unet import UNetGenerator


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
    variables = gen.init({"params": jax.random.key(0)}, x, train=False)
    a = gen.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    b = gen.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(a, b)
    no_dropout = UNetGenerator(num_downs=6, ngf=4, norm="instance", dropout_rate=0.0)
    c = no_dropout.apply(variables, x, train=True)
    d = gen.apply(variables, x, train=False)
    np.testing.assert_allclose(c, d, atol=1e-6)


def conv_transpose_loops(x: np.ndarray, w: np.ndarray, stride: int, padding: int,
                         output_padding: int) -> np.ndarray:
    """PyTorch ConvTranspose2d by its definition: out[s*i - p + k] += x[i] * w[k]."""
    n, h, wd, _ = x.shape
    k = w.shape[0]
    oh = (h - 1) * stride - 2 * padding + k + output_padding
    ow = (wd - 1) * stride - 2 * padding + k + output_padding
    out = np.zeros((n, oh, ow, w.shape[3]))
    for i in range(h):
        for j in range(wd):
            for ki in range(k):
                for kj in range(k):
                    oi, oj = stride * i - padding + ki, stride * j - padding + kj
                    if 0 <= oi < oh and 0 <= oj < ow:
                        out[:, oi, oj] += x[:, i, j] @ w[ki, kj]
    return out


TRANSPOSED_FORMS = {
    "subpixel": layers.conv_transpose_subpixel,
    "matmul": layers.conv_transpose_matmul,
    "space_to_depth": lambda x, w, stride, padding, output_padding:
        stride2.conv_transpose_stride2(x, w, padding),
}


@pytest.mark.parametrize("form", sorted(TRANSPOSED_FORMS))
@pytest.mark.parametrize("kernel,padding,output_padding", [(4, 1, 0), (3, 1, 1)])
def test_transposed_conv_forms_equal_the_definition(form, kernel, padding, output_padding):
    """Every CPU form of the transposed conv: PyTorch's values, and lax's gradients."""
    if form == "space_to_depth" and not stride2.supported(kernel, padding, 10, 12):
        pytest.skip("space-to-depth needs an even kernel of width 2 * padding + 2")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    w = rng.normal(size=(kernel, kernel, 3, 4)).astype(np.float32)
    expected = conv_transpose_loops(x, w, 2, padding, output_padding)
    reference = layers.conv_transpose_reference(x, w, 2, padding, output_padding)
    ours = TRANSPOSED_FORMS[form](x, w, 2, padding, output_padding)
    assert ours.shape == expected.shape == (2, 10, 12, 4)
    np.testing.assert_allclose(reference, expected, atol=1e-4)
    np.testing.assert_allclose(ours, expected, atol=1e-4)

    def loss(fn, x, w):
        return jnp.sum(jnp.sin(fn(x, w, 2, padding, output_padding)))

    grads_ref = jax.grad(lambda x, w: loss(layers.conv_transpose_reference, x, w), (0, 1))(x, w)
    grads_ours = jax.grad(lambda x, w: loss(TRANSPOSED_FORMS[form], x, w), (0, 1))(x, w)
    for a, b in zip(grads_ref, grads_ours, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("x_shape,out_channels,kernel_grad", [
    ((2, 8, 6, 5), 7, "xla"),
    ((1, 64, 66, 3), 8, "patches"),
    ((1, 64, 66, 16), 8, "shifted"),
])
def test_stride2_convolution_equals_xla_convolution(x_shape, out_channels, kernel_grad):
    """The space-to-depth passes of a stride-2 conv: XLA's values and gradients, on every
    kernel-gradient form."""
    kernel_shape = (4, 4, x_shape[3], out_channels)
    assert stride2.kernel_grad_form(kernel_shape, x_shape[1] // 2, x_shape[2] // 2) == kernel_grad
    rng = np.random.default_rng(2)
    x = rng.normal(size=x_shape).astype(np.float32)
    w = rng.normal(size=kernel_shape).astype(np.float32)

    def xla(x, w):
        return jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def ours(x, w):
        return stride2.conv_stride2(x, w, 1)

    np.testing.assert_allclose(ours(x, w), xla(x, w), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.grad(lambda x, w: jnp.sum(jnp.sin(ours(x, w))), (0, 1))(x, w),
                    jax.grad(lambda x, w: jnp.sum(jnp.sin(xla(x, w))), (0, 1))(x, w),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert not stride2.supported(4, 1, 7, 6) and not stride2.supported(3, 1, 8, 8)


@pytest.mark.parametrize("x_shape,out_channels,kernel_grad", [
    ((2, 5, 6, 7), 3, "xla"),  # Small maps: the x-against-dy-patches matmul.
    ((1, 32, 34, 5), 8, "patches"),
    ((1, 32, 34, 5), 16, "shifted"),
])
def test_space_to_depth_transposed_conv_gradients_on_every_form(x_shape, out_channels,
                                                                kernel_grad):
    """The transposed conv's kernel gradient takes the stride-2 forms with the roles swapped."""
    swapped_shape = (4, 4, out_channels, x_shape[3])
    assert stride2.kernel_grad_form(swapped_shape, *x_shape[1:3]) == kernel_grad
    rng = np.random.default_rng(3)
    x = rng.normal(size=x_shape).astype(np.float32)
    w = rng.normal(size=(4, 4, x_shape[3], out_channels)).astype(np.float32)

    def loss(fn, x, w):
        return jnp.sum(jnp.sin(fn(x, w)))

    ours = jax.grad(lambda x, w: loss(lambda x, w: stride2.conv_transpose_stride2(x, w, 1), x,
                                      w), (0, 1))(x, w)
    reference = jax.grad(lambda x, w: loss(
        lambda x, w: layers.conv_transpose_reference(x, w, 2, 1, 0), x, w), (0, 1))(x, w)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_upsample_modes_share_parameters_and_outputs():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
    modes = ("conv_transpose", "subpixel", "matmul", "space_to_depth")
    ups = {m: layers.Upsample2x(5, mode=m) for m in modes}
    variables = ups["subpixel"].init(jax.random.key(1), x)
    for mode in modes[1:]:
        np.testing.assert_allclose(ups["conv_transpose"].apply(variables, x),
                                   ups[mode].apply(variables, x), atol=1e-5)
    resize = layers.Upsample2x(5, mode="resize_bilinear")
    assert resize.apply(resize.init(jax.random.key(1), x), x).shape == (2, 8, 8, 5)
    assert layers.resolve_upsample("auto", "cpu", pixels=4096) == "space_to_depth"
    assert layers.resolve_upsample("auto", "cpu", pixels=64) == "matmul"
    assert layers.resolve_upsample("auto", "cpu", pixels=256) == "space_to_depth"
    assert layers.resolve_upsample("auto", "cpu", 3, 1, pixels=4096) == "subpixel"
    assert layers.resolve_upsample("auto", "tpu", pixels=64) == "conv_transpose"
    with pytest.raises(ValueError, match="model.upsample"):
        layers.resolve_upsample("pixelshuffle")
    with pytest.raises(ValueError, match="space_to_depth"):
        layers.Upsample2x(5, kernel_size=3, output_padding=1, mode="space_to_depth").init(
            jax.random.key(1), x)


@pytest.mark.parametrize("kernel,stride,padding", [(4, 2, 1), (4, 1, 1), (3, 1, 0), (1, 1, 0)])
def test_patch_matmul_convolution_equals_xla_convolution(kernel, stride, padding):
    """Small maps on CPU go through `correlate`'s patch matmul: same values and gradients."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
    w = rng.normal(size=(kernel, kernel, 5, 4)).astype(np.float32)
    pads = ((padding, padding), (padding, padding))
    assert layers.use_im2col(2 * 6 * 7, "cpu") and not layers.use_im2col(2 * 6 * 7, "tpu")

    def xla(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), pads,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def ours(x, w):
        return layers.correlate(x, w, stride, pads)

    np.testing.assert_allclose(ours(x, w), xla(x, w), rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.grad(lambda x, w: jnp.sum(jnp.sin(ours(x, w))), (0, 1))(x, w),
                    jax.grad(lambda x, w: jnp.sum(jnp.sin(xla(x, w))), (0, 1))(x, w),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
