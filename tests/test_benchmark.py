"""Benchmark helpers that the closing figures depend on, and the benchmark program itself."""

import json
import os
import subprocess
import sys

import pytest
from absl import app

from p2p_jax.perf import measure

HLO = """
  %all-reduce.1 = f32[4,4,64,128]{3,2,1,0} all-reduce(f32[4,4,64,128]{3,2,1,0} %p), to_apply=%add
  %all-reduce.2 = (f32[10]{0}, /*index=1*/bf16[3,2]{1,0}) all-reduce(f32[10]{0} %a, %b)
  %ags = (f32[1,16]{1,0}, f32[8,16]{1,0}) all-gather-start(f32[1,16]{1,0} %x), dimensions={0}
  %agd = f32[8,16]{1,0} all-gather-done((f32[1,16]{1,0}, f32[8,16]{1,0}) %ags)
  ROOT %rs = bf16[2,16]{1,0} reduce-scatter(bf16[8,16]{1,0} %g), dimensions={0}, to_apply=%add
  %conv = f32[4,4,64,128]{3,2,1,0} convolution(%x, %y)
"""


def test_collectives_count_each_kind_once_with_the_bytes_it_produces():
    """An asynchronous collective counts once, by its result (`-done`), not its `-start`."""
    assert measure.collectives(HLO) == {
        "all-reduce": {"count": 2, "bytes": 4 * 4 * 64 * 128 * 4 + (10 * 4 + 6 * 2)},
        "all-gather": {"count": 1, "bytes": 8 * 16 * 4},
        "reduce-scatter": {"count": 1, "bytes": 2 * 16 * 2}}
    assert measure.collective_bytes(HLO) == (4 * 4 * 64 * 128 * 4 + 10 * 4 + 6 * 2
                                             + 8 * 16 * 4 + 2 * 16 * 2)


def test_matmul_peak_is_the_best_size(monkeypatch):
    """The peak is the fastest size's rate, not the last or the largest one's."""
    seconds = {32: 1e-5, 64: 1e-3}

    def fake_median_seconds(fn, steps, warmup):
        return seconds[fn.args[0].shape[0]]

    monkeypatch.setattr(measure, "median_seconds", fake_median_seconds)
    assert measure.matmul_peak_gflops(sizes=(32, 64)) == pytest.approx(2 * 32**3 / 1e-5 / 1e9)


@pytest.mark.slow
def test_train_benchmark_prints_one_consistent_record():
    """`python -m p2p_jax.benchmark train` end to end, data parallel over the 8 test devices."""
    result = subprocess.run(
        [sys.executable, "-m", "p2p_jax.benchmark", "train", "--config=configs/tiny.py",
         "--config.batch_size=8", "--steps=2", "--warmup=1"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert (record["benchmark"], record["batch_size"], record["device_count"]) == ("train", 8, 8)
    assert record["images_per_sec"] == pytest.approx(8 / record["step_time_s"])
    assert record["achieved_gflops"] == pytest.approx(
        record["flops_per_step"] / record["step_time_s"] / 1e9)
    assert record["utilization"] == pytest.approx(
        record["achieved_gflops"] / (record["peak_gflops"] * 8))
    assert record["flops_per_step"] > 0 and record["peak_gflops"] > 0
    assert record["collective_bytes_per_step"] > 0  # The gradients are all-reduced.
    assert record["peak_memory_bytes"] > 0 and record["compile_s"] > 0


def test_ab_override_parses_literals_and_rejects_unknown_keys(tiny_config):
    measure.override(tiny_config, "model.ngf=16")
    measure.override(tiny_config, "model.conv_impl=xla")
    measure.override(tiny_config, "model.eval_mode=True")
    assert (tiny_config.model.ngf, tiny_config.model.conv_impl) == (16, "xla")
    assert tiny_config.model.eval_mode is True
    with pytest.raises(app.UsageError, match="upsampel"):
        measure.override(tiny_config, "model.upsampel=subpixel")
    with pytest.raises(app.UsageError, match="KEY=VALUE"):
        measure.override(tiny_config, "model.ngf")


def test_ab_xla_option_parses_booleans_and_rejects_non_xla_names():
    assert measure.compiler_option("xla_cpu_use_xnnpack=TRUE") == ("xla_cpu_use_xnnpack", True)
    assert measure.compiler_option(
        "xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT") == (
        "xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_DOT")
    for bad in ("xla_cpu_use_xnnpack", "model.ngf=16"):
        with pytest.raises(app.UsageError, match="XLA_OPTION=VALUE"):
            measure.compiler_option(bad)


@pytest.mark.slow
def test_ab_benchmark_alternates_two_variants_in_one_process():
    result = subprocess.run(
        [sys.executable, "-m", "p2p_jax.benchmark", "ab", "--config=configs/tiny.py",
         "--config.batch_size=8", "--b=batch_size=16",
         "--b=model.conv_impl=xla", "--b_xla=xla_cpu_enable_fast_math=false", "--steps=3",
         "--warmup=1"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["b_overrides"] == ["batch_size=16", "model.conv_impl=xla"]
    assert record["b_xla"] == {"xla_cpu_enable_fast_math": False}
    assert (record["a_batch_size"], record["b_batch_size"]) == (8, 16)
    assert len(record["a_times_s"]) == len(record["b_times_s"]) == 3
    assert record["b_speedup"] == pytest.approx(
        record["b_images_per_sec"] / record["a_images_per_sec"])


@pytest.mark.slow
def test_ab_benchmark_names_an_xla_option_that_xla_refuses_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "p2p_jax.benchmark", "ab", "--config=configs/tiny.py",
         "--config.batch_size=8", "--b_xla=xla_no_such_option=1", "--steps=1", "--warmup=0"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--b_xla: INVALID_ARGUMENT: No such compile option: 'xla_no_such_option'" in (
        result.stderr.strip().splitlines()[-1])


def test_memory_breakdown_names_what_is_live_at_the_peak(tmp_path):
    """XLA's dumps of a compiled gradient step, read back: the buffers live at its peak add up
    to the peak, and each is named by what it is (the argument's pytree path, or the op and
    whether the forward or the backward pass made it)."""
    import jax
    import jax.numpy as jnp

    from p2p_jax.perf import memory_breakdown

    def step(state, batch):
        def loss(params):
            return jnp.sum(jnp.tanh(batch["x"] @ params["w"]) ** 2)
        return jax.grad(loss)(state["params"])

    state = {"params": {"w": jax.ShapeDtypeStruct((1024, 1024), jnp.float32)}}
    batch = {"x": jax.ShapeDtypeStruct((512, 1024), jnp.float32)}
    jax.jit(step).lower(state, batch).compile(
        compiler_options=memory_breakdown.dump_options(str(tmp_path), "jit_step"))
    peak, buffers = memory_breakdown.analyse(str(tmp_path))
    assert peak == sum(b.size for b in buffers) >= (1024 + 512) * 1024 * 4
    by_kind = {kind: size for kind, size, _ in memory_breakdown.totals(buffers, "kind")}
    assert by_kind["parameters"] == 1024 * 1024 * 4 and by_kind["input batch"] == 512 * 1024 * 4
    assert {(b.shape.split("{")[0], b.kind) for b in buffers[:2]} == {
        ("f32[1024,1024]", "parameters"), ("f32[1024,1024]", "backward (gradients)")}
    text = memory_breakdown.report(peak, buffers, 3)
    assert text.startswith(f"peak: {peak / 1e6:.1f} MB") and "by kind" in text


def test_no_module_starts_an_xla_backend_when_imported():
    """`benchmark memory` sets XLA:CPU's memory-minimising scheduler before the backend
    starts; a module-level jax array (models/color.py's colour matrices) started it at import
    and the flag was ignored: the 2048x1024 pix2pixHD figure read 16.83 GB instead of 11.91.
    An unknown XLA flag set after the imports must still reach XLA, which refuses it."""
    modules = ["p2p_jax.perf.measure", "p2p_jax.train.loop", "p2p_jax.data.pipeline",
               "p2p_jax.serving.predict", "p2p_jax.serving.export", "p2p_jax.eval.evaluators"]
    code = (f"import os\nimport {', '.join(modules)}\n"
            "os.environ['XLA_FLAGS'] = '--xla_flag_that_does_not_exist=1'\n"
            "import jax\njax.devices()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},
                            timeout=300)
    assert result.returncode != 0 and "xla_flag_that_does_not_exist" in result.stderr, (
        result.stderr[-2000:])
