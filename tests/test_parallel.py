"""Mesh shapes, FSDP sharding rules, and FSDP training equal to pure data parallelism."""

import re
import types

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from p2p_jax import checkpointing, parallel
from p2p_jax.data import pipeline
from p2p_jax.train import loop as trainer
from p2p_jax.train import state as train_state
from p2p_jax.train import step as train_step
from tests.helpers import assert_states_match, fixed_schedule


def mesh_config(data, fsdp):
    return ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "fsdp_min_size": 1024})


def test_mesh_shapes():
    assert parallel.mesh_shape(mesh_config(-1, 1), 8) == (8, 1)
    assert parallel.mesh_shape(mesh_config(-1, 4), 8) == (2, 4)
    assert parallel.mesh_shape(mesh_config(2, -1), 8) == (2, 4)
    for bad in ((3, -1), (2, 2), (-1, -1)):
        with pytest.raises(ValueError, match="mesh"):
            parallel.mesh_shape(mesh_config(*bad), 8)


def test_fsdp_splits_large_arrays_only(devices):
    mesh = parallel.create_mesh(mesh_config(2, 4), devices)
    assert mesh.shape == {"data": 2, "fsdp": 4}
    big = parallel.parameter_sharding((4, 4, 512, 256), mesh, min_size=2**18)
    assert big.spec == PartitionSpec(None, None, "fsdp", None)
    odd = parallel.parameter_sharding((3, 3, 1030, 700), mesh, min_size=1)
    assert odd.spec == PartitionSpec(None, None, None, "fsdp")  # 1030 is not a multiple of 4.
    assert parallel.parameter_sharding((64,), mesh, min_size=2**18).spec == PartitionSpec()
    data_only = parallel.create_mesh(mesh_config(-1, 1), devices)
    assert parallel.parameter_sharding((4, 4, 512, 256), data_only, 1).spec == PartitionSpec()


@pytest.mark.slow
def test_fsdp_training_equals_data_parallel_and_restores_across_meshes(tiny_config, tmp_path):
    """With the generator's moving average kept, which FSDP splits like the parameters."""
    data_parallel, fsdp = str(tmp_path / "dp"), str(tmp_path / "fsdp")
    tiny_config.model.ema_decay = 0.9
    trainer.train_and_evaluate(fixed_schedule(tiny_config, 6), data_parallel)
    tiny_config.mesh.data, tiny_config.mesh.fsdp, tiny_config.mesh.fsdp_min_size = 2, 4, 1024
    state = trainer.train_and_evaluate(fixed_schedule(tiny_config, 6), fsdp)
    kernel = state.g_params["down_3"]["kernel"]  # (4, 4, 32, 64): split over fsdp.
    assert kernel.sharding.spec == PartitionSpec(None, None, None, "fsdp")
    assert state.g_opt_state[0].mu["down_3"]["kernel"].sharding == kernel.sharding
    assert state.ema_params["down_3"]["kernel"].sharding == kernel.sharding
    assert_states_match(checkpointing.load_train_state(data_parallel),
                        checkpointing.load_train_state(fsdp))
    # A data-parallel checkpoint resumes on the FSDP mesh.
    resumed = trainer.train_and_evaluate(fixed_schedule(tiny_config, 8), data_parallel)
    assert int(jax.device_get(resumed.step)) == 8
    assert resumed.g_params["down_3"]["kernel"].sharding.spec == kernel.sharding.spec


def per_example_config(config, data, fsdp):
    """The tiny U-Net as pix2pixHD normalises (instance norm, no dropout), with R1 due at every
    step, in XLA's own convolutions (what TPU and GPU run), on a (data, fsdp) mesh that splits
    every array of 1024 elements or more."""
    config.model.norm, config.model.dropout, config.model.conv_impl = "instance", 0.0, "xla"
    config.loss.r1_gamma, config.loss.r1_every = 1.0, 1
    config.mesh.data, config.mesh.fsdp, config.mesh.fsdp_min_size = data, fsdp, 1024
    return config


def two_steps(config, devices):
    """(state, metrics of each step, the compiled step's HLO) after two steps."""
    setup = train_state.build(config, devices=devices)
    iterator = pipeline.create_train_iterator(setup.config, 0, 1)
    state, history, traced = setup.state, [], None
    for _ in range(2):
        batch = parallel.global_batch(next(iterator), setup.mesh)
        traced = traced or train_step.trace_train_step(setup.recipe, state, batch, setup.mesh)
        compiled = traced.lower().compile()
        state, metrics = compiled(state, batch, {})
        history.append(jax.device_get(metrics))
    return setup, jax.device_get(state), history, compiled.as_text()


@pytest.mark.slow
@pytest.mark.parametrize("update_order", ["d_then_g", "joint"])
def test_per_device_fsdp_equals_data_parallel_with_fsdps_collectives(tiny_config, devices,
                                                                    update_order):
    """Networks that treat examples independently run FSDP as one program per device: the same
    training as data parallelism (with R1's gradient of a gradient), whose only collectives on
    split parameters are all-gathers of them and reduce-scatters of their gradients."""
    tiny_config.optimizer.update_order = update_order
    if update_order == "joint":  # pix2pixHD's: with its multi-scale D's feature matching.
        tiny_config.model.discriminator, tiny_config.model.num_d = "multiscale", 2
        tiny_config.model.n_layers_d, tiny_config.loss.lambda_feat = 2, 10.0
    _, dp_state, dp_history, _ = two_steps(per_example_config(tiny_config, -1, 1), devices)
    setup, fsdp_state, fsdp_history, hlo = two_steps(per_example_config(tiny_config, 2, 4),
                                                     devices)
    assert train_step.per_device_fsdp(setup.recipe, setup.mesh)
    assert setup.state.g_params["down_3"]["kernel"].sharding.spec == PartitionSpec(
        None, None, None, "fsdp")
    for a, b in zip(dp_history, fsdp_history, strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    # As in test_train's sharded step: Adam's moments are linear in the gradients, so they
    # match up to float reassociation (relative to the largest); a parameter within Adam's
    # step bound per step, as a bias ahead of instance norm has a gradient of rounding noise.
    for a, b in ((dp_state.g_opt_state[0].mu, fsdp_state.g_opt_state[0].mu),
                 (dp_state.d_opt_state[0].mu, fsdp_state.d_opt_state[0].mu)):
        scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(a))
        jax.tree.map(lambda x, y, s=scale: np.testing.assert_allclose(x, y, rtol=0,
                                                                      atol=1e-3 * s), a, b)
    bound = 2 * 2 * 1.1 * tiny_config.optimizer.learning_rate
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=bound),
                 (dp_state.g_params, dp_state.d_params), (fsdp_state.g_params,
                                                          fsdp_state.d_params))
    # No split parameter's gradient is all-reduced whole: only small replicated ones are.
    reduced = re.findall(r"= (\S+) all-reduce\(", hlo)
    sizes = [int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
             for text in reduced for dims in re.findall(r"\[([\d,]*)\]", text)]
    assert max(sizes) < 1024, reduced
    assert "reduce-scatter(" in hlo and "all-gather(" in hlo


@pytest.mark.parametrize("norm, conv_impl, fsdp, per_device", [
    ("instance", "xla", 4, True), ("batch", "xla", 4, False), ("instance", "cpu", 4, False),
    ("instance", "xla", 1, False)])
def test_fsdp_runs_per_device_only_for_per_example_networks_in_xlas_form(
        tiny_config, devices, norm, conv_impl, fsdp, per_device):
    tiny_config.model.norm, tiny_config.model.conv_impl = norm, conv_impl
    tiny_config.mesh.data, tiny_config.mesh.fsdp = -1, fsdp
    setup = train_state.build(tiny_config, devices=devices, abstract=True)
    assert train_step.per_device_fsdp(setup.recipe, setup.mesh) == per_device
    form = "gathered on each device" if per_device else "partitioned by the compiler"
    assert train_step.describe_mesh(setup.recipe, setup.mesh) == (
        f"mesh data {8 // fsdp} x fsdp {fsdp} (parameters split {fsdp} ways, {form})"
        if fsdp > 1 else "mesh data 8 x fsdp 1 (data parallel)")


def test_lost_peers_are_told_apart_from_bugs(monkeypatch):
    lost = RuntimeError("INTERNAL: Gloo context initialization failed: Timed out waiting")
    bug = RuntimeError("INVALID_ARGUMENT: Disallowed device-to-device transfer")
    assert not parallel.is_peer_failure(lost)  # A lone process has no peers to lose.
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    assert parallel.is_peer_failure(lost)
    assert parallel.is_peer_failure(RuntimeError("Barrier timed out. Id: p2p_jax_x"))
    assert not parallel.is_peer_failure(bug)


def test_tpu_options_for_per_device_fsdp_and_a_memory_budget(tiny_config, devices):
    """Chosen from the mesh's platform: no latency-hiding scheduler for the per-device FSDP
    step alone; `mesh.memory_limit_gb` as XLA's HBM size in MiB."""
    tiny_config.model.norm, tiny_config.model.conv_impl = "instance", "xla"
    tiny_config.mesh.data, tiny_config.mesh.fsdp = -1, 4
    setup = train_state.build(tiny_config, devices=devices, abstract=True)
    assert train_step.step_compiler_options(setup.recipe, setup.mesh) == {}  # CPU devices.
    tpu = types.SimpleNamespace(shape=setup.mesh.shape,
                                devices=np.asarray([types.SimpleNamespace(platform="tpu")]))
    assert train_step.step_compiler_options(setup.recipe, tpu) == {
        "xla_tpu_enable_latency_hiding_scheduler": False}
    assert train_step.step_compiler_options(setup.recipe, tpu, memory_limit_gb=11.7) == {
        "xla_tpu_enable_latency_hiding_scheduler": False, "xla_tpu_max_hbm_size_mib": 11157}
    tpu.shape = {**setup.mesh.shape, "data": 4, "fsdp": 1}
    assert train_step.step_compiler_options(setup.recipe, tpu) == {}
