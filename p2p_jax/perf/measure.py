"""Benchmarks that print one JSON line each: `train`, `predict`, `input`, `ab` and `memory`.

  python -m p2p_jax.benchmark train --config=configs/facades.py --config.batch_size=4 --steps=10
  python -m p2p_jax.benchmark memory --config=configs/cityscapes_hd.py:local
  python -m p2p_jax.benchmark predict --config=configs/facades.py --config.batch_size=16
  python -m p2p_jax.benchmark input --config=configs/default.py --steps=50
  python -m p2p_jax.benchmark ab --config=configs/facades.py --b=model.conv_impl=xla --steps=16

`train` and `predict` time the compiled step on synthetic on-device data (median after warm-up,
each call blocked until ready); FLOPs are the convolutions' and matmuls' of the traced step
(p2p_jax/perf/flops.py, the same on every backend) and the peak is the best of a few large
matmuls in the step's compute dtype, measured in the same process. `ab` compares two variants of the
train step within one process (see bench_ab).
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from p2p_jax import parallel
from p2p_jax.config.checks import validate_config
from p2p_jax.data import pipeline
from p2p_jax.models import generation
from p2p_jax.perf import flops, memory_breakdown
from p2p_jax.train import state as train_state
from p2p_jax.train import step as train_step

_CONFIG = config_flags.DEFINE_config_file("config", "configs/facades.py", "Config file.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed iterations after warm-up.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed iterations after compilation.")
_B = flags.DEFINE_multi_string("b", [], "ab: a config override for variant B, KEY=VALUE.")
_TOPOLOGY = flags.DEFINE_string(
    "topology", None, "memory: compile for this TPU topology instead of this machine's devices "
    "(compile-only, no TPU needed; libtpu installed), e.g. v5e:2x2.")
_DEVICES = flags.DEFINE_integer("devices", 0, "memory: the first N devices (0: all).")
_BREAKDOWN = flags.DEFINE_integer(
    "breakdown", 0, "memory: also print the buffers live at the peak by kind (parameters, "
    "optimizer state, activations, gradients) and by layer, and this many largest ones, from "
    "XLA's dumps of the compiled step (perf/memory_breakdown.py); 0: off.")
_DUMP_TO = flags.DEFINE_string(
    "dump_to", None, "memory --breakdown: keep XLA's dumps of the step (optimised HLO, buffer "
    "assignment, live ranges) in this folder, to read further (default: a temporary one).")
_B_XLA = flags.DEFINE_multi_string(
    "b_xla", [], "ab: an XLA option for variant B's compilation only, NAME=VALUE (e.g. "
    "xla_cpu_use_xnnpack=true): process-wide XLA_FLAGS cannot differ within one process.")
_B_PATCH = flags.DEFINE_string(
    "b_patch", None, "ab: MODULE:FUNCTION called before variant B is built (e.g. one that "
    "swaps a custom VJP), to compare code changes within one process.")


def median_seconds(fn: Callable[[], object], steps: int, warmup: int) -> float:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# Square matmul sizes whose best rate is the peak. One size is not enough: on the 2-core
# development CPU 1536²-2048² run at 455-478 GFLOP/s and 4096² at 352-418.
CPU_PEAK_MATMUL_SIZES = (1024, 2048, 4096)
ACCELERATOR_PEAK_MATMUL_SIZES = (4096, 8192)


def matmul_peak_gflops(dtype: str = "float32", sizes: tuple[int, ...] | None = None,
                       steps: int = 10) -> float:
    """Best-case matmul throughput of this backend in the step's compute dtype, the best over
    `sizes`: the denominator of utilization."""
    if sizes is None:
        cpu = jax.default_backend() == "cpu"
        sizes = CPU_PEAK_MATMUL_SIZES if cpu else ACCELERATOR_PEAK_MATMUL_SIZES
    matmul = jax.jit(jnp.matmul)
    rates = []
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
        b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
        seconds = median_seconds(functools.partial(matmul, a, b), steps, warmup=3)
        rates.append(2 * n**3 / seconds / 1e9)
    return max(rates)


def peak_memory_bytes(compiled: jax.stages.Compiled) -> int | None:
    """XLA's static footprint of the step (arguments, outputs and temporaries; donated buffers
    once), else the allocator's peak. The allocator's peak also counts GPU autotuning scratch
    (~10 GB on an H100 whatever the batch), so it comes second."""
    memory = compiled.memory_analysis()
    if memory is not None:
        return int(memory.temp_size_in_bytes + memory.argument_size_in_bytes
                   + memory.output_size_in_bytes - memory.alias_size_in_bytes)
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


# A collective's result (a synchronous op, or the `-done` half of an asynchronous one).
_COLLECTIVE = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.-]+\s*=\s*(.*?)\s+(all-reduce|all-gather|"
                         r"reduce-scatter|all-to-all|collective-permute)(?:-done)?\(",
                         re.MULTILINE)
_ARRAY = re.compile(r"(pred|s8|u8|s16|u16|s32|u32|s64|u64|bf16|f16|f32|f64)\[([\d,]*)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4,
          "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8}


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
    """Cross-device collectives in one step of a compiled program, by kind: how many, and the
    bytes they produce (an FSDP step's weight all-gathers and gradient reduce-scatters; a
    data-parallel step's gradient all-reduce)."""
    found: dict[str, dict[str, int]] = {}
    for match in _COLLECTIVE.finditer(re.sub(r"/\*.*?\*/", "", hlo_text)):
        entry = found.setdefault(match.group(2), {"count": 0, "bytes": 0})
        entry["count"] += 1
        for dtype, dims in _ARRAY.findall(match.group(1)):
            size = int(np.prod([int(d) for d in dims.split(",") if d], dtype=np.int64))
            entry["bytes"] += size * _BYTES[dtype]
    return found


def compiled_flops(compiled: jax.stages.Compiled) -> float | None:
    """FLOPs of one device's compiled program by XLA's own cost analysis (None where the
    backend gives none). On TPU it counts every convolution, so it checks the jaxpr count;
    after GPU compilation cuDNN's convolutions count as zero (see `perf/flops.py`)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def collective_bytes(hlo_text: str) -> int:
    """Bytes produced by cross-device collectives in one step, from the compiled HLO."""
    return sum(entry["bytes"] for entry in collectives(hlo_text).values())


def synthetic_batch(config, mesh, batch_size: int) -> dict[str, jax.Array]:
    """Random batches of the pipeline's shapes: images, or class ids below `label_nc` and
    0/1 boundaries."""
    rng = np.random.default_rng(0)
    host = {}
    for key, spec in train_state.batch_spec(config, mesh).items():
        high = {"A": config.dataset.label_nc or 256, "E": 2, "skipped": 1}.get(key, 256)
        host[key] = rng.integers(0, high, (batch_size, *spec.shape[1:]), dtype=np.uint8
                                 ).astype(spec.dtype)
    return {k: jax.device_put(v, parallel.batch_sharding(mesh)) for k, v in host.items()}


def parameter_counts(setup: train_state.Setup) -> dict[str, int]:
    def count(tree):
        return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree.leaves(tree)))

    return {"generator_params": count(setup.state.g_params),
            "discriminator_params": count(setup.state.d_params)}


def static_record(setup: train_state.Setup, kind: str, batch_size: int,
                  traced: jax.stages.Traced, compiled: jax.stages.Compiled) -> dict:
    """What is known without running: the model, parameters, FLOPs and XLA's static memory
    per device."""
    config = setup.config
    return {
        "benchmark": kind,
        "generator": config.model.generator,
        "discriminator": config.model.discriminator,
        "image_size": config.dataset.image_size,
        "batch_size": batch_size,
        "dtype": config.dtype,
        "remat": config.model.remat,
        "mesh": dict(setup.mesh.shape),
        **parameter_counts(setup),
        "flops_per_step": flops.jaxpr_flops(traced.jaxpr),
        "peak_memory_bytes": peak_memory_bytes(compiled),
        "device_kind": setup.mesh.devices.flat[0].device_kind,
        "device_count": setup.mesh.devices.size,
    }


def report(setup: train_state.Setup, kind: str, batch_size: int, step_s: float,
           compile_s: float, traced: jax.stages.Traced, compiled: jax.stages.Compiled) -> dict:
    """One JSON record. FLOPs and GFLOP/s are the whole step's, over every device; the peak
    is one device's, so utilization divides by the device count."""
    record = static_record(setup, kind, batch_size, traced, compiled)
    step_flops = record["flops_per_step"]
    peak = matmul_peak_gflops(setup.config.dtype)
    achieved = step_flops / step_s / 1e9
    return {
        **record,
        "images_per_sec": batch_size / step_s,
        "step_time_s": step_s,
        "compile_s": compile_s,
        "achieved_gflops": achieved,
        "peak_gflops": peak,
        "utilization": achieved / (peak * jax.device_count()),
        "collective_bytes_per_step": collective_bytes(compiled.as_text()),
    }


def _setup(config) -> tuple[train_state.Setup, dict[str, jax.Array]]:
    """The run as the trainer builds it, and a synthetic on-device batch. Channels left to the
    data (0) are 3 here: the batch is random, not read from the dataset."""
    setup = train_state.build(config, channels=3)
    return setup, synthetic_batch(setup.config, setup.mesh, setup.config.batch_size)


def bench_train(config) -> dict:
    setup, batch = _setup(config)
    config, state = setup.config, setup.state
    start = time.perf_counter()
    traced = train_step.trace_train_step(setup.recipe, state, batch, setup.mesh, setup.frozen)
    compiled = traced.lower().compile()
    compile_s = time.perf_counter() - start
    holder = [state]

    def step():
        holder[0], metrics = compiled(holder[0], batch, setup.frozen)
        return metrics

    step_s = median_seconds(step, _STEPS.value, _WARMUP.value)
    return report(setup, "train", config.batch_size, step_s, compile_s, traced, compiled)


# XLA:CPU schedules for parallelism by default, keeping far more alive than the accelerator
# backends, which schedule under a memory limit; for figures that stand in for one device's
# memory, its memory-minimising scheduler (set before the CPU backend starts).
CPU_MEMORY_SCHEDULER = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def bench_memory(config) -> dict:
    """The train step compiled and not run, on abstract state (nothing allocated, no weights
    file read): parameters, FLOPs and XLA's static memory per device, for sizes this machine
    cannot train. On CPU, under XLA's memory-minimising scheduler (CPU_MEMORY_SCHEDULER)."""
    flags_now = os.environ.get("XLA_FLAGS", "")
    if "concurrency_optimized_scheduler" not in flags_now:
        os.environ["XLA_FLAGS"] = f"{flags_now} {CPU_MEMORY_SCHEDULER}".strip()
    devices = jax.devices()
    if _TOPOLOGY.value:
        from jax.experimental import topologies

        devices = list(topologies.get_topology_desc(_TOPOLOGY.value, "tpu").devices)
    devices = devices[:_DEVICES.value] if _DEVICES.value else devices
    setup = train_state.build(config, channels=3, abstract=True, devices=devices)
    start = time.perf_counter()
    traced = train_step.trace_train_step(setup.recipe, setup.state,
                                         train_state.batch_spec(setup.config, setup.mesh),
                                         setup.mesh, setup.frozen)
    with tempfile.TemporaryDirectory(prefix="p2p_jax_xla_dump_") as temporary:
        dump = _DUMP_TO.value or temporary
        options = train_step.step_compiler_options(setup.recipe, setup.mesh,
                                                   setup.config.mesh.memory_limit_gb)
        if _BREAKDOWN.value:
            options.update(memory_breakdown.dump_options(dump, "train_step"))
        compiled = traced.lower().compile(compiler_options=options or None)
        peak = None
        if _BREAKDOWN.value:
            peak, buffers = memory_breakdown.analyse(dump)
            print(memory_breakdown.report(peak, buffers, _BREAKDOWN.value), flush=True)
    record = static_record(setup, "memory", setup.config.batch_size, traced, compiled)
    memory = compiled.memory_analysis()
    if peak is not None:
        record["peak_live_bytes"] = peak
        record["peak_by_kind"] = {kind: size for kind, size, _ in
                                  memory_breakdown.totals(buffers, "kind")}
    return {**record, "compiled_flops_per_device": compiled_flops(compiled),
            "collectives": collectives(compiled.as_text()),
            "cpu_scheduler": _cpu_scheduler(record["device_kind"]),
            "compile_s": time.perf_counter() - start,
            "temp_bytes": int(memory.temp_size_in_bytes) if memory else None,
            "argument_bytes": int(memory.argument_size_in_bytes) if memory else None}


def _cpu_scheduler(device_kind: str) -> str | None:
    if device_kind != "cpu":
        return None
    concurrency = "concurrency_optimized_scheduler=false" not in os.environ.get("XLA_FLAGS", "")
    return "concurrency_optimized" if concurrency else "memory_minimising"


def bench_predict(config) -> dict:
    setup, batch = _setup(config)
    config, state = setup.config, setup.state
    keys = jax.device_put(
        generation.image_keys(jax.random.PRNGKey(0),
                              np.arange(config.batch_size, dtype=np.uint32)),
        parallel.batch_sharding(setup.mesh))
    fn = jax.jit(functools.partial(generation.generate, setup.recipe.generator),
                 out_shardings=parallel.batch_sharding(setup.mesh))
    start = time.perf_counter()
    variables = state.generator_variables()
    inputs = {k: batch[k] for k in ("A", "E") if k in batch}
    traced = fn.trace(variables, inputs, keys)
    compiled = traced.lower().compile()
    compile_s = time.perf_counter() - start
    step_s = median_seconds(lambda: compiled(variables, inputs, keys), _STEPS.value,
                            _WARMUP.value)
    return report(setup, "predict", config.batch_size, step_s, compile_s, traced, compiled)


def bench_input(config) -> dict:
    """The host pipeline alone: read + decode + transforms + batch, no device work."""
    it = pipeline.create_train_iterator(config, 0, 1)
    for _ in range(_WARMUP.value):
        next(it)
    start = time.perf_counter()
    for _ in range(_STEPS.value):
        next(it)
    elapsed = time.perf_counter() - start
    return {"benchmark": "input", "source": config.dataset.source,
            "preprocess": config.dataset.preprocess, "batch_size": config.batch_size,
            "worker_count": config.dataset.worker_count,
            "images_per_sec": _STEPS.value * config.batch_size / elapsed}


def override(config, assignment: str) -> None:
    """Applies `model.conv_impl=xla` (a Python literal or a bare string) to a locked config,
    so a misspelt key fails as on the command line."""
    key, sep, text = assignment.partition("=")
    if not sep:
        raise app.UsageError(f"--b={assignment}: expected KEY=VALUE, e.g. model.conv_impl=xla")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    *path, field = key.split(".")
    try:
        node = config
        for part in path:
            node = node[part]
        setattr(node, field, value)
    except (AttributeError, KeyError, TypeError) as error:
        raise app.UsageError(f"--b={assignment}: {str(error).splitlines()[0]}") from None


def compiler_option(text: str) -> tuple[str, str | bool]:
    """`--b_xla=NAME=VALUE` as an XLA compile option (true/false as booleans, else the text,
    which XLA parses for the option's type and rejects by name when it does not exist)."""
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("xla_"):
        raise app.UsageError(f"--b_xla={text}: expected XLA_OPTION=VALUE, e.g. "
                             "xla_cpu_use_xnnpack=true")
    return name, {"true": True, "false": False}.get(value.lower(), value)


def bench_ab(config) -> dict:
    """Variant A (the config) and B (with the --b overrides, --b_patch and --b_xla) of the step,
    compiled in one process, their calls alternated (ABBA...). On a shared machine separate runs
    drift by 5-10%, which hides the 2-3% that one change is usually worth. Run the control (no
    --b) too: on the 2-core CPU it has given B a 0.7-1.4% lead, whichever is compiled first."""
    variant_b = config.copy_and_resolve_references()
    for assignment in _B.value:
        override(variant_b, assignment)
    validate_config(variant_b)
    b_xla = dict(compiler_option(text) for text in _B_XLA.value)
    if b_xla:  # XLA refuses an unknown option by name: on a trivial program, before the steps.
        try:
            jax.jit(lambda x: x).lower(0.0).compile(compiler_options=b_xla)
        except jax.errors.JaxRuntimeError as error:
            raise app.UsageError(f"--b_xla: {str(error).splitlines()[0]}") from None
    runs = {}
    for name, variant in (("a", config), ("b", variant_b)):
        if name == "b" and _B_PATCH.value:
            module, _, function = _B_PATCH.value.partition(":")
            getattr(importlib.import_module(module), function)()
        setup, batch = _setup(variant)
        compiled = train_step.compile_train_step(setup.recipe, setup.state, batch, setup.mesh,
                                                 setup.frozen, b_xla if name == "b" else None,
                                                 setup.config.mesh.memory_limit_gb)
        runs[name] = {"step": compiled, "state": setup.state, "batch": batch, "times": [],
                      "batch_size": setup.config.batch_size}
    for i in range(_WARMUP.value + _STEPS.value):
        for name in ("ab" if i % 2 == 0 else "ba"):
            run = runs[name]
            start = time.perf_counter()
            run["state"], metrics = run["step"](run["state"], run["batch"])
            jax.block_until_ready(metrics)
            if i >= _WARMUP.value:
                run["times"].append(time.perf_counter() - start)
    record = {"benchmark": "ab", "b_overrides": list(_B.value), "b_patch": _B_PATCH.value,
              "b_xla": b_xla}
    for name, run in runs.items():
        step_s = statistics.median(run["times"])
        record |= {f"{name}_batch_size": run["batch_size"], f"{name}_step_time_s": step_s,
                   f"{name}_images_per_sec": run["batch_size"] / step_s,
                   f"{name}_times_s": [round(t, 4) for t in run["times"]]}
    record["b_speedup"] = record["b_images_per_sec"] / record["a_images_per_sec"]
    return record


BENCHMARKS = {"train": bench_train, "predict": bench_predict, "input": bench_input,
              "ab": bench_ab, "memory": bench_memory}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in BENCHMARKS:
        raise app.UsageError(f"usage: python -m p2p_jax.benchmark {{{','.join(BENCHMARKS)}}} "
                             "--config=FILE [--steps=N]")
    config = _CONFIG.value
    validate_config(config)
    print(json.dumps(BENCHMARKS[argv[1]](config)), flush=True)
