"""A one-hot label map kept as its class ids, and the convolution of it as table lookups.

pix2pixHD's generator input is a label map one-hot over `num_classes` channels plus, with
instance maps, a 0/1 boundary channel. A convolution of such an input adds, per tap, one
kernel row per pixel (plus the boundary row where the boundary is 1): `kernel[tap][id]`, a
lookup instead of a matmul over mostly-zero channels. At 512x256 with 35 classes, pix2pixHD's
7x7 head with its instance norm takes 43 ms forward and 187 ms forward + weight gradient this
way, against 247 and 880 ms as XLA:CPU's dense convolution (benchmarks/README.md). The
lookups' gradient is a scatter-add into the same small table.

`OneHotMap` stands for the dense tensor wherever a model takes its input: `shape` is the
dense one's, `dense(dtype)` builds it (for pooling, the discriminator's pairs, and every
convolution in the portable `xla` form), reflect padding pads the ids, and zero padding is a
code whose row is zero. Class ids >= num_classes have no row, as `jax.nn.one_hot` gives them
zeros.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax


@flax.struct.dataclass
class OneHotMap:
    """`codes` (N, H, W) int32: `min(id, num_classes) * (1 + edges) + boundary`, where the code
    of id `num_classes` (out of range, or padding) looks up a zero label row."""

    codes: jax.Array
    num_classes: int = flax.struct.field(pytree_node=False)
    edges: bool = flax.struct.field(pytree_node=False)

    @classmethod
    def encode(cls, ids: jax.Array, num_classes: int, boundary: jax.Array | None = None
               ) -> OneHotMap:
        """`ids` (N, H, W) class ids, `boundary` (N, H, W) 0/1 or None."""
        codes = jnp.minimum(ids.astype(jnp.int32), num_classes)
        if boundary is None:
            return cls(codes, num_classes, False)
        return cls(codes * 2 + (boundary != 0).astype(jnp.int32), num_classes, True)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.codes.shape, self.num_classes + int(self.edges))

    @property
    def padding_code(self) -> int:
        return self.num_classes * (1 + int(self.edges))

    def astype(self, dtype) -> OneHotMap:
        """Itself: 0/1 are exact in every dtype; `dense` and the convolution take theirs."""
        del dtype
        return self

    def dense(self, dtype=jnp.float32) -> jax.Array:
        """The (N, H, W, C) tensor this map stands for. Codes are never negative: shifts and
        masks split them (ONNX exports cannot convert `//` and `%` over a dynamic batch)."""
        ids = jnp.right_shift(self.codes, 1) if self.edges else self.codes
        x = jax.nn.one_hot(ids, self.num_classes, dtype=dtype)
        if self.edges:
            x = jnp.concatenate([x, jnp.bitwise_and(self.codes, 1).astype(dtype)[..., None]],
                                -1)
        return x

    def reflect_pad(self, pad: int) -> OneHotMap:
        return self.replace(codes=jnp.pad(self.codes, ((0, 0), (pad, pad), (pad, pad)),
                                          mode="reflect"))


def as_array(x: jax.Array | OneHotMap, dtype=None) -> jax.Array:
    """An input as an array: a OneHotMap's dense tensor (in `dtype`), an array as it is."""
    if isinstance(x, OneHotMap):
        return x.dense(dtype or jnp.float32)
    return x


def _lookup_table(labels: OneHotMap, kernel: jax.Array) -> jax.Array:
    """(kh, kw, codes, out): each code's sum of kernel rows, in float32."""
    kernel = kernel.astype(jnp.float32)
    kh, kw, _, out = kernel.shape
    rows = jnp.concatenate([kernel[:, :, :labels.num_classes],
                            jnp.zeros((kh, kw, 1, out), kernel.dtype)], 2)
    if not labels.edges:
        return rows
    with_boundary = rows + kernel[:, :, labels.num_classes:labels.num_classes + 1]
    return jnp.stack([rows, with_boundary], 3).reshape(kh, kw, -1, out)


def conv2d(labels: OneHotMap, kernel: jax.Array, stride: int,
           padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """`xla.conv2d(labels.dense(), kernel, ...)` as one table lookup per tap, summed in float32;
    the result in the kernel's dtype.

    The sum runs as a loop over the kernel's rows, whose result XLA:CPU writes out once. As
    straight-line code XLA fuses the lookups into each consumer's reduction (the instance
    norm's mean and variance) instead: 430 ms for pix2pixHD's head and norm against 43.
    """
    kh, kw = kernel.shape[:2]
    (top, bottom), (left, right) = padding
    codes = jnp.pad(labels.codes, ((0, 0), (top, bottom), (left, right)),
                    constant_values=labels.padding_code)
    out_h = (codes.shape[1] - kh) // stride + 1
    out_w = (codes.shape[2] - kw) // stride + 1
    table = _lookup_table(labels, kernel)

    def add_kernel_row(total, i):
        rows = lax.dynamic_slice_in_dim(codes, i, stride * (out_h - 1) + 1, 1)[:, ::stride]
        for j in range(kw):
            total = total + table[i, j][rows[:, :, j:j + stride * (out_w - 1) + 1:stride]]
        return total, None

    total = jnp.zeros((codes.shape[0], out_h, out_w, kernel.shape[-1]), jnp.float32)
    total, _ = lax.scan(add_kernel_row, total, jnp.arange(kh))
    return total.astype(kernel.dtype)
