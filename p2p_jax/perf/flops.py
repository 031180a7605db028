"""FLOPs of a program's convolutions and matmuls, counted from its jaxpr.

XLA's cost analysis depends on the backend: after GPU compilation, convolutions are cuDNN calls
that it counts as zero, and some backends analyse nothing before compilation. Counting the
jaxpr gives the same figure on every backend for the same program. Like XLA's analysis, a
convolution counts only the taps that land on real input, not on padding or the holes of an
input dilation (transposed convolutions), so `conv_transpose` and its stride-1 rewrites count
alike. Elementwise work is left out: it is a fraction of a percent of these networks' FLOPs.
"""

from __future__ import annotations

import math

from jax.extend import core


def _valid_taps(size: int, out: int, kernel: int, stride: int, pad_lo: int, lhs_dilation: int,
                rhs_dilation: int) -> int:
    """(output position, kernel tap) pairs along one spatial axis that read a real input."""
    dilated = (size - 1) * lhs_dilation + 1
    count = 0
    for o in range(out):
        for k in range(kernel):
            i = o * stride + k * rhs_dilation - pad_lo
            count += 0 <= i < dilated and i % lhs_dilation == 0
    return count


def conv_flops(eqn: core.JaxprEqn) -> int:
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    out = eqn.outvars[0].aval.shape
    p = eqn.params
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    taps = math.prod(
        _valid_taps(lhs[lhs_spec[2 + d]], out[out_spec[2 + d]], rhs[rhs_spec[2 + d]],
                    p["window_strides"][d], p["padding"][d][0], p["lhs_dilation"][d],
                    p["rhs_dilation"][d])
        for d in range(len(lhs_spec) - 2))
    return 2 * out[out_spec[0]] * out[out_spec[1]] * rhs[rhs_spec[1]] * taps


def dot_flops(eqn: core.JaxprEqn) -> int:
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
    rhs_free = math.prod(d for i, d in enumerate(rhs) if i not in (*rhs_contract, *rhs_batch))
    return 2 * math.prod(lhs) * rhs_free


_COUNTERS = {"conv_general_dilated": conv_flops, "dot_general": dot_flops}


def _marked_vars(atoms: list, marks: list[bool]) -> list[core.Var]:
    return [a for a, m in zip(atoms, marks, strict=True) if m and isinstance(a, core.Var)]


def _whole(jaxpr: core.Jaxpr) -> int:
    return _count(jaxpr, [True] * len(jaxpr.outvars))[0]


def _count(jaxpr: core.Jaxpr, used_outputs: list[bool]) -> tuple[int, list[bool]]:
    """FLOPs of the equations that reach a used output (XLA drops the rest: e.g. the input
    gradient of a first layer, which a custom VJP computes and the caller discards), and
    which inputs are read. Loops and branches count whole: their outputs feed back or hang
    on a runtime index."""
    live = set(_marked_vars(jaxpr.outvars, used_outputs))
    total = 0
    for eqn in reversed(jaxpr.eqns):
        used = [v in live for v in eqn.outvars]
        if not any(used) and not eqn.effects:
            continue
        name = eqn.primitive.name
        subs = [getattr(sub, "jaxpr", sub) for sub in core.jaxprs_in_params(eqn.params)]
        used_inputs = [True] * len(eqn.invars)
        if name in _COUNTERS:
            total += _COUNTERS[name](eqn)
        elif name == "cond":
            total += max(_whole(sub) for sub in subs)
        elif name in ("scan", "while"):
            total += sum(_whole(sub) for sub in subs) * eqn.params.get("length", 1)
        elif name == "shard_map":  # One device's program: every device of its axes runs it.
            inner, used_inputs = _count(subs[0], used)
            mesh = eqn.params["mesh"]
            total += inner * math.prod(mesh.shape[axis]
                                       for axis in eqn.params["newly_manual_axes"])
        elif (len(subs) == 1 and len(subs[0].invars) == len(eqn.invars)
              and len(subs[0].outvars) == len(eqn.outvars)):  # jit, custom_jvp_call, ...
            inner, used_inputs = _count(subs[0], used)
            total += inner
        else:
            total += sum(_whole(sub) for sub in subs)
        live.update(_marked_vars(eqn.invars, used_inputs))
    return total, [v in live for v in jaxpr.invars]


def jaxpr_flops(jaxpr: core.Jaxpr | core.ClosedJaxpr) -> int:
    """Convolution and matmul FLOPs of one run of the whole (global-shaped) program: a scan's
    body counts `length` times, a shard_map's once per device, a cond its costliest branch, a
    while loop's body once (its trip count is not static)."""
    return _whole(getattr(jaxpr, "jaxpr", jaxpr))
