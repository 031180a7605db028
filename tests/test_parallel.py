"""Mesh shapes, FSDP sharding rules, and FSDP training equal to pure data parallelism."""

import jax
import ml_collections
import pytest
from jax.sharding import PartitionSpec

from p2p_jax import checkpointing, parallel
from p2p_jax.train import loop as trainer
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


def test_lost_peers_are_told_apart_from_bugs(monkeypatch):
    lost = RuntimeError("INTERNAL: Gloo context initialization failed: Timed out waiting")
    bug = RuntimeError("INVALID_ARGUMENT: Disallowed device-to-device transfer")
    assert not parallel.is_peer_failure(lost)  # A lone process has no peers to lose.
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    assert parallel.is_peer_failure(lost)
    assert parallel.is_peer_failure(RuntimeError("Barrier timed out. Id: p2p_jax_x"))
    assert not parallel.is_peer_failure(bug)
