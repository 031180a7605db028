"""FLOP counts from the jaxpr against hand counts and XLA's own cost analysis."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from p2p_jax.ops import stride2
from p2p_jax.ops import xla as xla_ops
from p2p_jax.perf import flops
from p2p_jax.train import state as train_state
from p2p_jax.train import step as train_step

DN = ("NHWC", "HWIO", "NHWC")


def conv(x, k, stride=2, padding=1):
    return jax.lax.conv_general_dilated(x, k, (stride, stride), [(padding, padding)] * 2,
                                        dimension_numbers=DN)


def count(fn, *args):
    return flops.jaxpr_flops(jax.jit(fn).trace(*args).jaxpr)


def xla_count(fn, *args):
    return jax.jit(fn).lower(*args).cost_analysis()["flops"]


def test_strided_conv_counts_only_taps_on_the_input():
    x, k = jnp.ones((2, 8, 8, 3)), jnp.ones((4, 4, 3, 5))
    # Output 4 wide; taps on real input per output column: 3, 4, 4, 3 (the edges hit padding).
    assert count(conv, x, k) == 2 * 2 * 5 * 3 * 14**2
    assert count(conv, x, k) == xla_count(conv, x, k)


@pytest.mark.parametrize("fn", [
    lambda x, k: xla_ops.conv_transpose2d(x, k, 2, 1, 0),
    lambda x, k: jax.grad(lambda k: conv(x, k).sum())(k),
    lambda x, k: jax.grad(lambda x: conv(x, k, stride=1, padding=2).sum())(x),
], ids=["transpose", "kernel_grad", "input_grad"])
def test_dilated_convs_match_xla(fn):
    """Input dilation (transposed convs) and window dilation (kernel gradients) skip zeros."""
    x, k = jnp.ones((2, 16, 16, 8)), jnp.ones((4, 4, 8, 8))
    assert count(fn, x, k) == xla_count(fn, x, k)


def test_matmul_and_loops():
    a, b = jnp.ones((3, 4, 5)), jnp.ones((3, 5, 6))
    assert count(jnp.matmul, a, b) == 2 * 3 * 4 * 5 * 6

    def scanned(a, b):
        return jax.lax.scan(lambda c, _: (c, jnp.matmul(a, b)), 0.0, length=7)[1]

    assert count(scanned, a, b) == 7 * 2 * 3 * 4 * 5 * 6

    def branches(a, b):
        return jax.lax.cond(a.sum() > 0, lambda: jnp.matmul(a, b).sum(), lambda: a.sum())

    assert count(branches, a, b) == 2 * 3 * 4 * 5 * 6


def test_unused_work_is_not_counted():
    """A custom VJP computes the input gradient of a first layer; the caller drops it."""
    x, k = jnp.ones((1, 32, 32, 3)), jnp.ones((4, 4, 3, 64))
    kernel_grad = jax.grad(lambda k: stride2.conv_stride2(x, k, 1).sum())
    both = jax.grad(lambda x, k: stride2.conv_stride2(x, k, 1).sum(), argnums=(0, 1))
    assert 0 < count(kernel_grad, k) < count(both, x, k)
    assert count(kernel_grad, k) == pytest.approx(xla_count(kernel_grad, k), rel=0.02)
    assert count(lambda x, k: [conv(x, k), x][1], x, k) == 0


def test_train_step_matches_xla_up_to_elementwise_work(tiny_config, devices):
    """XLA also counts elementwise ops: 14% of the step at these tiny widths, ~1% at 256x256."""
    setup = train_state.build(tiny_config, devices=devices[:1])
    mesh, state = setup.mesh, setup.state
    size = tiny_config.dataset.image_size
    batch = {key: jnp.zeros((2, size, size, 3), jnp.uint8) for key in "AB"}
    traced = train_step.trace_train_step(setup.recipe, state, batch, mesh)
    ours, xla = flops.jaxpr_flops(traced.jaxpr), traced.lower().cost_analysis()["flops"]
    assert 0.7 * xla < ours < xla
    step = functools.partial(train_step.train_step, setup.recipe)
    assert ours == count(step, state, batch)


def test_a_shard_map_body_counts_once_per_device(devices):
    """FSDP's per-device programs (`parallel.gathered_apply`) count as the whole batch's."""
    mesh = Mesh(np.asarray(devices).reshape(2, 4), ("data", "fsdp"))
    x, w = jnp.ones((8, 16)), jnp.ones((16, 32))
    per_device = jax.shard_map(jnp.matmul, mesh=mesh, in_specs=(P(("data", "fsdp")), P()),
                               out_specs=P(("data", "fsdp")))
    assert flops.jaxpr_flops(jax.make_jaxpr(per_device)(x, w)) == 2 * 8 * 16 * 32
