"""The CPU forms of the convolutions (p2p_jax.ops.cpu) against PyTorch's definition and
XLA's own convolutions, in values and gradients; the implementation is chosen once."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from p2p_jax import ops
from p2p_jax.ops import cpu, stride2, taps, winograd, xla


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
    "subpixel": cpu.conv_transpose_subpixel,
    "matmul": cpu.conv_transpose_matmul,
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
    reference = xla.conv_transpose2d(x, w, 2, padding, output_padding)
    ours = TRANSPOSED_FORMS[form](x, w, 2, padding, output_padding)
    assert ours.shape == expected.shape == (2, 10, 12, 4)
    np.testing.assert_allclose(reference, expected, atol=1e-4)
    np.testing.assert_allclose(ours, expected, atol=1e-4)

    def loss(fn, x, w):
        return jnp.sum(jnp.sin(fn(x, w, 2, padding, output_padding)))

    grads_ref = jax.grad(lambda x, w: loss(xla.conv_transpose2d, x, w), (0, 1))(x, w)
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
        lambda x, w: xla.conv_transpose2d(x, w, 2, 1, 0), x, w), (0, 1))(x, w)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kernel,stride,padding", [(4, 2, 1), (4, 1, 1), (3, 1, 0), (1, 1, 0)])
def test_patch_matmul_convolution_equals_xla_convolution(kernel, stride, padding):
    """Small maps on CPU go through `correlate`'s patch matmul: same values and gradients."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
    w = rng.normal(size=(kernel, kernel, 5, 4)).astype(np.float32)
    pads = ((padding, padding), (padding, padding))
    assert cpu.use_im2col(2 * 6 * 7) and not cpu.use_im2col(2 * 16 * 16)

    def xla(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), pads,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def ours(x, w):
        return cpu.conv2d(x, w, stride, pads)

    np.testing.assert_allclose(ours(x, w), xla(x, w), rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.grad(lambda x, w: jnp.sum(jnp.sin(ours(x, w))), (0, 1))(x, w),
                    jax.grad(lambda x, w: jnp.sum(jnp.sin(xla(x, w))), (0, 1))(x, w),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_a_convolution_padded_past_its_kernel_equals_xla_convolution():
    """pix2pixHD's 4x4 stride-1 layers with padding 2 (output larger than input) run over an
    explicit pad on CPU: same values and gradients as XLA's padded convolution."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 17, 19, 6)).astype(np.float32)  # Past the patch-matmul size.
    w = rng.normal(size=(4, 4, 6, 3)).astype(np.float32)
    pads = ((2, 2), (2, 2))
    assert not cpu.use_im2col(17 * 19)

    def reference(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), pads,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    ours = cpu.conv2d(x, w, 1, pads)
    assert ours.shape == (1, 18, 20, 3)
    np.testing.assert_allclose(ours, reference(x, w), rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.grad(lambda x, w: jnp.sum(jnp.sin(cpu.conv2d(x, w, 1, pads))), (0, 1))(
                        x, w),
                    jax.grad(lambda x, w: jnp.sum(jnp.sin(reference(x, w))), (0, 1))(x, w),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def assert_same_function(ours, reference, x: np.ndarray, w: np.ndarray) -> None:
    """Equal values, input gradients and kernel gradients (through a sine, so the cotangent
    varies per element)."""
    np.testing.assert_allclose(ours(x, w), reference(x, w), rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.grad(lambda x, w: jnp.sum(jnp.sin(ours(x, w))), (0, 1))(x, w),
                    jax.grad(lambda x, w: jnp.sum(jnp.sin(reference(x, w))), (0, 1))(x, w),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("x_shape,padding", [
    ((1, 40, 34, 6), 2),  # pix2pixHD's discriminator: 4x4, stride 2, padding 2.
    ((2, 23, 25, 5), 2),  # Odd padded sizes: one zero row and column more, then cropped.
    ((1, 37, 36, 4), 1),
])
def test_even_kernel_stride2_convolutions_of_any_padding_take_the_space_to_depth_form(
        x_shape, padding):
    """Every 4x4 stride-2 convolution past the patch-matmul size goes through `stride2` on CPU
    (no input-dilated convolution in its gradient), with XLA's values and gradients."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=x_shape).astype(np.float32)
    w = rng.normal(size=(4, 4, x_shape[3], 5)).astype(np.float32)
    pads = ((padding, padding), (padding, padding))
    out_h, out_w = (x_shape[1] + 2 * padding - 4) // 2 + 1, (x_shape[2] + 2 * padding - 4) // 2 + 1
    assert not cpu.use_im2col(x_shape[0] * out_h * out_w)
    program = str(jax.make_jaxpr(jax.grad(
        lambda x, w: jnp.sum(cpu.conv2d(x, w, 2, pads)), (0, 1)))(x, w))
    assert "lhs_dilation=(1, 1)" in program and "lhs_dilation=(2, 2)" not in program
    assert_same_function(lambda x, w: cpu.conv2d(x, w, 2, pads),
                         lambda x, w: xla.conv2d(x, w, 2, pads), x, w)


@pytest.mark.parametrize("kernel,pads", [(7, ((0, 0), (0, 0))), (3, ((1, 2), (0, 1)))])
def test_few_output_convolutions_as_one_matmul_over_all_taps(kernel, pads):
    """A generator's last layer (7x7, 3 outputs) runs as one matmul over all taps on CPU: XLA's
    values, input gradient and kernel gradient; wide outputs, strided ones and products too
    large to hold keep the other forms."""
    assert cpu.use_tap_matmul((7, 7, 64, 3), 1, 262 * 518)
    assert not cpu.use_tap_matmul((7, 7, 64, 16), 1, 262 * 518)
    assert not cpu.use_tap_matmul((4, 4, 64, 3), 2, 262 * 518)
    assert not cpu.use_tap_matmul((7, 7, 64, 3), 1, 2054 * 1030)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 19, 23, 6)).astype(np.float32)
    w = rng.normal(size=(kernel, kernel, 6, 3)).astype(np.float32)
    program = str(jax.make_jaxpr(lambda x, w: cpu.conv2d(x, w, 1, pads))(x, w))
    assert "conv_general_dilated" not in program
    assert_same_function(lambda x, w: cpu.conv2d(x, w, 1, pads),
                         lambda x, w: xla.conv2d(x, w, 1, pads), x, w)
    unpadded = rng.normal(size=(1, 9, 8, 6)).astype(np.float32)
    assert_same_function(taps.conv_valid, lambda x, w: xla.conv2d(x, w, 1, ((0, 0), (0, 0))),
                         unpadded, w)


def test_the_tap_matmul_form_sums_bf16_products_in_float32():
    """In bf16 the 49 taps' products are summed in float32 and rounded once: the error is a
    bf16 rounding of the output (as XLA's bf16 convolution), not 49 of them."""
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=(1, 20, 24, 16)), jnp.bfloat16)
    w = jnp.asarray(rng.normal(size=(7, 7, 16, 3)) / 28, jnp.bfloat16)
    exact = xla.conv2d(x.astype(jnp.float32), w.astype(jnp.float32), 1, ((0, 0), (0, 0)))
    ours = taps.conv_valid(x, w)
    assert ours.dtype == jnp.bfloat16
    error = jnp.max(jnp.abs(ours.astype(jnp.float32) - exact))
    assert error <= 2.0**-8 * jnp.max(jnp.abs(exact))


@pytest.mark.parametrize("x_shape,pads", [
    ((2, 8, 10, 3), ((1, 1), (1, 1))),  # Even output: whole tiles.
    ((1, 7, 9, 3), ((0, 0), (0, 0))),  # Odd output: the last tile row and column cropped.
    ((1, 6, 5, 3), ((2, 0), (1, 2))),  # Uneven and wider padding.
])
def test_winograd_convolution_equals_xla_convolution(x_shape, pads):
    """F(2x2, 3x3): same values and gradients (input and kernel) as XLA's 3x3 convolution."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=x_shape).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(winograd.conv3x3(x, w, pads), xla.conv2d(x, w, 1, pads),
                               rtol=1e-4, atol=1e-4)
    for a, b in zip(
            jax.grad(lambda x, w: jnp.sum(jnp.sin(winograd.conv3x3(x, w, pads))), (0, 1))(x, w),
            jax.grad(lambda x, w: jnp.sum(jnp.sin(xla.conv2d(x, w, 1, pads))), (0, 1))(x, w),
            strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_wide_3x3_convolutions_take_the_winograd_form_on_cpu():
    """pix2pixHD's 1024-channel residual convs (and VGG's 512-channel ones) go through
    Winograd's form; narrower or strided ones do not. The choice gives XLA's values."""
    assert cpu.use_winograd((3, 3, 1024, 1024), 1) and cpu.use_winograd((3, 3, 512, 512), 1)
    assert not cpu.use_winograd((3, 3, 256, 512), 1)
    assert not cpu.use_winograd((3, 3, 1024, 1024), 2)
    assert not cpu.use_winograd((4, 4, 512, 512), 1)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1, 17, 17, 512)).astype(np.float32)  # Past the patch-matmul size.
    w = (rng.normal(size=(3, 3, 512, 512)) / np.sqrt(9 * 512)).astype(np.float32)
    pads = ((1, 1), (1, 1))
    program = str(jax.make_jaxpr(lambda x, w: cpu.conv2d(x, w, 1, pads))(x, w))
    assert "conv_general_dilated" not in program and "dot_general" in program
    np.testing.assert_allclose(cpu.conv2d(x, w, 1, pads), xla.conv2d(x, w, 1, pads),
                               rtol=1e-4, atol=1e-4)


def test_transposed_conv_form_choice_and_the_impl_resolved_once():
    assert cpu.transpose_form(4, 1, 0, pixels=4096) == "space_to_depth"
    assert cpu.transpose_form(4, 1, 0, pixels=64) == "matmul"
    assert cpu.transpose_form(4, 1, 0, pixels=256) == "space_to_depth"
    assert cpu.transpose_form(3, 1, 1, pixels=4096) == "subpixel"
    def mesh(platform, processes=(0,)):
        devices = [types.SimpleNamespace(platform=platform, process_index=p) for p in processes]
        return types.SimpleNamespace(devices=np.array(devices, dtype=object))

    assert ops.resolve_impl("auto", mesh("cpu", (0, 0))) == "cpu"
    assert ops.resolve_impl("auto", mesh("cpu", (0, 1))) == "xla"  # Several processes.
    assert ops.resolve_impl("auto", mesh("tpu")) == ops.resolve_impl("auto", mesh("gpu")) == "xla"
    assert ops.resolve_impl("xla", mesh("cpu")) == "xla"
    assert ops.resolve_impl("cpu", mesh("gpu")) == "cpu"
    with pytest.raises(ValueError, match="model.conv_impl"):
        ops.resolve_impl("fast", mesh("cpu"))


@pytest.mark.parametrize("shape", [(2, 4, 4, 8), (1, 16, 16, 8)])
def test_both_implementations_give_one_function(shape):
    """`xla` and `cpu` compute the same function with the same parameters, forward and back,
    on small maps (patch and per-tap matmuls) and larger ones (space-to-depth)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(np.float32)
    k = rng.normal(size=(4, 4, shape[3], 5)).astype(np.float32)
    for fn in (lambda x, k, impl: ops.conv2d(x, k, 2, 1, impl),
               lambda x, k, impl: ops.conv_transpose2d(x, k, 2, 1, 0, impl)):
        np.testing.assert_allclose(fn(x, k, "cpu"), fn(x, k, "xla"), rtol=1e-4, atol=1e-4)
        grads = [jax.grad(lambda x, k, i=impl, f=fn: jnp.sum(jnp.sin(f(x, k, i))), (0, 1))(x, k)
                 for impl in ("cpu", "xla")]
        for a, b in zip(*grads, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("edges", [False, True])
@pytest.mark.parametrize("kernel,stride,padding,reflect", [(7, 1, 0, 3), (4, 2, 1, 0),
                                                            (3, 1, ((0, 2), (1, 0)), 1)])
def test_one_hot_map_convolution_as_lookups_equals_the_dense_convolution(
        edges, kernel, stride, padding, reflect):
    """pix2pixHD's head (7x7 on a reflect-padded label map), the U-Net's first layer (4x4/2,
    zero padding) and an uneven padding: the lookups give XLA's convolution of the dense
    one-hot tensor, values and kernel gradients, ids out of range included (zero rows)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, size=(2, 9, 10))  # 6 > num_classes: some ids have no class.
    boundary = rng.integers(0, 2, size=(2, 9, 10)) if edges else None
    labels = ops.OneHotMap.encode(jnp.asarray(ids, jnp.uint8), 5, boundary)
    if reflect:
        labels = labels.reflect_pad(reflect)
    dense = labels.dense()
    expected_dense = np.concatenate(
        [np.eye(6, 5)[ids]] + ([boundary[..., None]] if edges else []), -1)
    np.testing.assert_array_equal(
        dense, np.pad(expected_dense, ((0, 0), (reflect,) * 2, (reflect,) * 2, (0, 0)),
                      mode="reflect"))
    w = rng.normal(size=(kernel, kernel, dense.shape[-1], 4)).astype(np.float32)
    pairs = padding if isinstance(padding, tuple) else ((padding,) * 2,) * 2
    np.testing.assert_allclose(ops.conv2d(labels, w, stride, padding, "cpu"),
                               xla.conv2d(dense, w, stride, pairs), atol=1e-5)
    np.testing.assert_array_equal(ops.conv2d(labels, w, stride, padding, "xla"),
                                  xla.conv2d(dense, w, stride, pairs))
    cotangent = rng.normal(size=xla.conv2d(dense, w, stride, pairs).shape).astype(np.float32)
    grad_lookups = jax.vjp(lambda w: ops.conv2d(labels, w, stride, padding, "cpu"), w)[1]
    grad_dense = jax.vjp(lambda w: xla.conv2d(dense, w, stride, pairs), w)[1]
    np.testing.assert_allclose(grad_lookups(cotangent)[0], grad_dense(cotangent)[0],
                               atol=1e-4)


def test_one_hot_map_convolution_in_bfloat16_rounds_once():
    """bf16: the kernel's bf16 rows summed in float32 and rounded once, as XLA's bf16
    convolution accumulates; within one bf16 rounding of the float32 result."""
    rng = np.random.default_rng(1)
    labels = ops.OneHotMap.encode(jnp.asarray(rng.integers(0, 35, size=(1, 12, 16))), 35,
                                  jnp.asarray(rng.integers(0, 2, size=(1, 12, 16))))
    w = jnp.asarray(rng.normal(size=(7, 7, 36, 8)), jnp.bfloat16)
    ours = ops.conv2d(labels.reflect_pad(3), w, 1, 0, "cpu")
    assert ours.dtype == jnp.bfloat16
    exact = xla.conv2d(labels.reflect_pad(3).dense(), w.astype(jnp.float32), 1,
                       ((0, 0), (0, 0)))
    np.testing.assert_allclose(np.asarray(ours, np.float32), exact,
                               rtol=2**-8, atol=1e-6)


@pytest.mark.parametrize("x_shape,kernel,stride,padding,bands", [
    ((2, 20, 13, 5), 7, 1, ((0, 0), (0, 0)), 2),
    ((2, 21, 14, 5), 4, 2, ((1, 1), (1, 1)), 5),
    ((2, 21, 14, 5), 4, 2, ((2, 2), (1, 1)), 3),  # 11 rows: the last band has 3.
    ((1, 16, 9, 3), 3, 1, ((2, 0), (1, 3)), 5)])  # 16 rows: 4 per band, the last 0.
def test_banded_weight_gradient_equals_xla_convolution(x_shape, kernel, stride, padding, bands):
    """The weight gradient summed over bands of output rows, whether or not they divide the
    rows: XLA's values and gradients."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, x_shape[-1], 6)), jnp.float32)

    def loss(fn):
        return lambda x, w: jnp.sum(jnp.sin(fn(x, w)))

    plain = lambda x, w: xla.lax_conv2d(x, w, stride, padding)  # noqa: E731
    banded = lambda x, w: xla.conv2d_banded(x, w, stride, padding, bands)  # noqa: E731
    np.testing.assert_array_equal(banded(x, w), plain(x, w))
    expected = jax.grad(loss(plain), (0, 1))(x, w)
    ours = jax.grad(loss(banded), (0, 1))(x, w)
    np.testing.assert_array_equal(ours[0], expected[0])
    np.testing.assert_allclose(ours[1], expected[1], rtol=1e-5, atol=1e-4)


def test_only_wide_shallow_convolutions_band_their_weight_gradient():
    """pix2pixHD's 7x7 head over 36 label channels at 2048x1024 (3.81 GB unfolded on TPU):
    8 bands of 128 rows; at 1024x512 2; pix2pix's 256x256 layers and a 64-channel 3x3 at
    1024x512 keep XLA's own gradient. Banded, the gradient's program holds one loop of 8
    bands."""
    no_pad = ((0, 0), (0, 0))
    assert xla.weight_gradient_bands((1, 1030, 2054, 36), (7, 7), 1, no_pad, 2) == 8
    assert xla.weight_gradient_bands((1, 518, 1030, 36), (7, 7), 1, no_pad, 2) == 2
    assert xla.weight_gradient_bands((1, 262, 262, 3), (7, 7), 1, no_pad, 4) == 1
    assert xla.weight_gradient_bands((1, 512, 1024, 64), (3, 3), 1, ((1, 1), (1, 1)), 2) == 1
    # 38 rows, 8 per band at most (10 input rows): 5 bands, whatever divides 38.
    assert xla.weight_gradient_bands((1, 40, 8, 4), (3, 3), 1, no_pad, 4,
                                     band_bytes=8 * 3 * 128 * 4 * 10) == 5
    # pix2pixHD's discriminator at 1024x512: 257 output rows (a prime), 2 bands.
    assert xla.weight_gradient_bands((1, 513, 1025, 64), (4, 4), 2, ((2, 2), (2, 2)), 2) == 2

    x = jax.ShapeDtypeStruct((1, 1030, 2054, 36), jnp.bfloat16)
    w = jax.ShapeDtypeStruct((7, 7, 36, 32), jnp.bfloat16)
    gradient = jax.make_jaxpr(jax.grad(lambda w, x: jnp.sum(xla.conv2d(x, w, 1, no_pad)
                                                             .astype(jnp.float32))))(w, x)
    loops = [e for e in gradient.eqns if e.primitive.name == "scan"]
    assert [e.params["length"] for e in loops] == [8]


def test_banded_weight_gradient_in_one_program_per_device():
    """Inside `shard_map` with the kernel gathered (per-device FSDP), the banded gradient is
    the plain one: its loop carries the gradient's varying type."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("fsdp",))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(8, 12, 6, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 8)), jnp.float32)

    def sharded(conv):
        def per_device(x, w):
            return conv(x, jax.lax.all_gather(w, "fsdp", axis=3, tiled=True))
        return jax.shard_map(per_device, mesh=mesh, in_specs=(P("fsdp"), P(None, None, None,
                             "fsdp")), out_specs=P("fsdp"))

    def gradient(conv):
        return jax.jit(jax.grad(lambda w: jnp.sum(jnp.sin(sharded(conv)(x, w)))))(w)

    expected = gradient(lambda x, w: xla.lax_conv2d(x, w, 1, ((1, 1), (1, 1))))
    ours = gradient(lambda x, w: xla.conv2d_banded(x, w, 1, ((1, 1), (1, 1)), 4))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)
