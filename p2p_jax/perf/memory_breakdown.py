"""Where a compiled program's memory goes at its peak, read from XLA's own analysis.

XLA dumps, for each program it compiles, the buffers live at the point of peak memory
(`*after_optimizations-live-range.txt`, "Live ranges at N (peak)"), each buffer's size as
allocated with the device's layout (`*-buffer-assignment.txt`), and the optimised HLO whose
instructions carry the JAX name stack (`op_name`: the function, `jvp(...)` for the forward
pass, `transpose(jvp(...))` for the backward one, then the Flax module path). Joined, they say
which layer's activation, gradient, parameter or optimizer state fills the peak, on any
backend XLA compiles for, TPU topologies included (compile-only, nothing runs).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections import defaultdict


# Debug options for `compile(compiler_options=...)` that make XLA write the dumps read here.
def dump_options(folder: str, module: str) -> dict:
    return {"xla_dump_to": folder, "xla_dump_hlo_as_text": True,
            "xla_dump_hlo_module_re": f".*{module}.*"}


@dataclasses.dataclass(frozen=True)
class Buffer:
    """One buffer live at the peak: its HLO value, bytes, shape, what it is and where from."""

    name: str
    size: int
    shape: str
    kind: str
    layer: str
    op_name: str


# Argument names are the train step's arguments' pytree paths (`state_g_params__...`).
_ARGUMENT_KINDS = (("opt_state", "optimizer state"), ("ema_", "moving average"),
                   ("params", "parameters"), ("batch_stats", "parameters"),
                   ("batch", "input batch"), ("frozen", "fixed weights (VGG)"))
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s([a-z][\w\-]*)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_PEAK_LINE = re.compile(r"^\s+([^\s{]+)\{([^}]*)\}:\s+(\d+) bytes")
# A buffer-assignment value: its name (with a tuple index) and its size on the device.
_VALUE = re.compile(r"value: <\d+ ([^\s>]+) @\d+> \(size=(\d+),offset=\d+\): (\S+)")


def _instructions(hlo_text: str) -> dict[str, tuple[str, str, str]]:
    """name -> (shape, opcode, op_name) of every instruction of the optimised HLO."""
    found = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            op_name = _OP_NAME.search(line)
            found[match.group(1)] = (match.group(2), match.group(3),
                                     op_name.group(1) if op_name else "")
    return found


def _peak(live_range_text: str) -> list[tuple[str, int]]:
    """(value name, bytes) of the buffers live at the peak."""
    lines = live_range_text.splitlines()
    start = next((i for i, line in enumerate(lines) if "(peak):" in line), None)
    if start is None:
        raise ValueError("no peak in XLA's live-range dump")
    peak = []
    for line in lines[start + 1:]:
        match = _PEAK_LINE.match(line)
        if not match:
            break
        index = match.group(2).strip()
        peak.append((match.group(1) + (f"{{{index}}}" if index else ""), int(match.group(3))))
    return peak


def _device_sizes(buffer_assignment_text: str) -> dict[str, int]:
    """value name -> bytes as allocated in the default memory space: with the device's
    layout, so with its padding (a TPU tiles the two minor dimensions by 8 x 128: a
    32-channel bf16 activation with channels minor takes 4x its logical size), where the
    live-range dump counts logical bytes. Values in other memory spaces (`S(n)`) are left
    out."""
    sizes: dict[str, int] = {}
    for match in _VALUE.finditer(buffer_assignment_text):
        if ":S(" not in match.group(3):
            name = match.group(1)
            sizes[name] = max(sizes.get(name, 0), int(match.group(2)))
    return sizes


def _elements(tuple_shapes: str) -> list[str]:
    """The top-level elements of a tuple shape's text (commas inside [], {} and () kept)."""
    elements, depth, start = [], 0, 0
    for i, char in enumerate(tuple_shapes):
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            elements.append(tuple_shapes[start:i].strip())
            start = i + 1
    elements.append(tuple_shapes[start:].strip())
    return [e.split("*/")[-1].strip() for e in elements]  # Drop /*index=N*/ comments.


def _layer(op_name: str) -> str:
    """The Flax module path of an op: the name stack after the differentiated function,
    without the primitive (e.g. `LocalEnhancer/model_local_0/conv_3`)."""
    parts = [p for p in op_name.split("/") if p and not p.startswith("jit(")]
    if not parts:
        return "(outside any layer)"
    module = re.sub(r"^(?:\w+\()+", "", parts[0]).rstrip(")")
    path = [module, *parts[1:-1]]
    return "/".join(p for p in path if p)[:80] or "(outside any layer)"


def _argument(op_name: str) -> str:
    """An argument's group: `state.g_opt_state[0].mu['down_4']['kernel']` ->
    `state.g_opt_state` (layers are listed for what the step computes)."""
    return op_name.replace("\\", "").split("[")[0].split(".mu")[0][:80]


def _kind(name: str, opcode: str, op_name: str) -> str:
    if opcode == "parameter":
        return next((kind for key, kind in _ARGUMENT_KINDS if key in name), "argument")
    if "transpose(" in op_name:
        return "backward (gradients)"
    if "jvp(" in op_name:
        return "forward (activations)"
    return "update and other"


def analyse(folder: str) -> tuple[int, list[Buffer]]:
    """(peak bytes, the buffers live at the peak, largest first) from the dumps in `folder`
    (one compiled module): which buffers from XLA's live ranges, their sizes as the buffer
    assignment allocates them (with the device layout's padding)."""
    def one(suffix: str) -> str:
        paths = glob.glob(os.path.join(folder, f"*after_optimizations{suffix}"))
        if len(paths) != 1:
            raise ValueError(f"{folder}: expected one compiled module's *{suffix}, found "
                             f"{len(paths)}")
        with open(paths[0]) as f:
            return f.read()

    peak = _peak(one("-live-range.txt"))
    instructions = _instructions(one(".txt"))
    device_sizes = _device_sizes(one("-buffer-assignment.txt"))
    buffers = []
    for name, logical in peak:
        size = device_sizes.get(name, logical)
        shape, opcode, op_name = instructions.get(name.split("{")[0], ("?", "?", ""))
        if "{" in name and shape.startswith("("):  # One element of a tuple.
            elements = _elements(shape[1:-1])
            index = int(name.split("{")[1].rstrip("}").split(",")[0] or 0)
            shape = elements[index] if index < len(elements) else shape
        if opcode == "parameter":
            layer = _argument(op_name) if op_name else name.rsplit(".", 1)[0]
        else:
            layer = _layer(op_name) if op_name else "(no name stack)"
        buffers.append(Buffer(name, size, shape, _kind(name, opcode, op_name), layer,
                              op_name.replace("\\", "")))
    buffers.sort(key=lambda b: -b.size)
    return sum(b.size for b in buffers), buffers


def totals(buffers: list[Buffer], key: str) -> list[tuple[str, int, int]]:
    """(group, bytes, buffer count) by `key` ("kind" or "layer"), largest first."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for buffer in buffers:
        entry = sums[getattr(buffer, key)]
        entry[0] += buffer.size
        entry[1] += 1
    return sorted(((k, v[0], v[1]) for k, v in sums.items()), key=lambda t: -t[1])


def report(peak: int, buffers: list[Buffer], top: int = 20) -> str:
    """The breakdown as text: by kind, by layer, and the largest buffers."""
    mb = 1e6
    lines = [f"peak: {peak / mb:.1f} MB in {len(buffers)} live buffers", "",
             "      MB  buffers  by kind"]
    lines += [f"{bytes_ / mb:8.1f}  {count:7d}  {kind}"
              for kind, bytes_, count in totals(buffers, "kind")]
    lines += ["", f"      MB  buffers  by layer or argument (top {top})"]
    lines += [f"{bytes_ / mb:8.1f}  {count:7d}  {layer}"
              for layer, bytes_, count in totals(buffers, "layer")[:top]]
    lines += ["", f"      MB  largest buffers (top {top}): shape, kind, op"]
    lines += [f"{b.size / mb:8.1f}  {b.shape.split('{')[0]:24s} {b.kind:22s} "
              f"{b.op_name.removeprefix('jit(train_step)/')[-80:] or b.name}"
              for b in buffers[:top]]
    return "\n".join(lines)
