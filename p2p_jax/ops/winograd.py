"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016).

Each 2x2 output tile is computed from a 4x4 input tile with 16 multiplies per channel pair
instead of 36: the input tiles and the kernel are transformed (additions only), multiplied as
16 independent matmuls (tiles x in) @ (in x out), and the products transformed back. Its
gradients are the same three kinds of operations, so autodiff needs nothing custom. The
transforms are memory traffic: the form pays where channels are wide and maps small
(pix2pixHD's 1024-channel residual blocks, VGG's 512-channel stages), and loses on wide maps
with few channels; `cpu.conv2d` chooses it from the shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# G g G^T for all 16 (a, b) at once: (16, 9) @ the kernel's 9 taps.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
_KERNEL_TRANSFORM = np.einsum("ai,bj->abij", _G, _G).reshape(16, 9)


def _input_transform(d0, d1, d2, d3):
    """B^T d along one axis."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _output_transform(m0, m1, m2, m3):
    """A^T m along one axis."""
    return m0 + m1 + m2, m1 - m2 - m3


def conv3x3(x: jax.Array, kernel: jax.Array,
            padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """What `xla.conv2d(x, kernel, 1, padding)` computes for a (3, 3, in, out) kernel."""
    (top, bottom), (left, right) = padding
    n, h, w, channels = x.shape
    out_h, out_w = h + top + bottom - 2, w + left + right - 2
    tiles_h, tiles_w = -(-out_h // 2), -(-out_w // 2)
    # Zero-padded to whole tiles; tile (i, j) reads 2x2 blocks (i, j) to (i + 1, j + 1).
    x = lax.pad(x, jnp.zeros((), x.dtype), (
        (0, 0, 0), (top, 2 * tiles_h + 2 - h - top, 0), (left, 2 * tiles_w + 2 - w - left, 0),
        (0, 0, 0)))
    blocks = x.reshape(n, tiles_h + 1, 2, tiles_w + 1, 2, channels)
    rows = _input_transform(blocks[:, :-1, 0], blocks[:, :-1, 1], blocks[:, 1:, 0],
                            blocks[:, 1:, 1])
    transformed = [v for r in rows for v in _input_transform(
        r[:, :, :-1, 0], r[:, :, :-1, 1], r[:, :, 1:, 0], r[:, :, 1:, 1])]
    tiles = jnp.stack(transformed).reshape(16, n * tiles_h * tiles_w, channels)
    weights = (jnp.asarray(_KERNEL_TRANSFORM, kernel.dtype) @ kernel.reshape(9, -1)).reshape(
        16, channels, -1)
    products = jnp.einsum("tmc,tco->tmo", tiles, weights).reshape(4, 4, n, tiles_h, tiles_w, -1)
    columns = [_output_transform(*(products[a, b] for a in range(4))) for b in range(4)]
    out_rows = [_output_transform(*(columns[b][r] for b in range(4))) for r in range(2)]
    y = jnp.stack([jnp.stack(out_rows[0], 3), jnp.stack(out_rows[1], 3)], 2)
    return y.reshape(n, 2 * tiles_h, 2 * tiles_w, -1)[:, :out_h, :out_w]
