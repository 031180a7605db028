"""Device mesh and shardings. The rest of the code never asks how many devices there are."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh whose `data` axis spans every device of every process."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    num = mesh.devices.size
    if global_batch_size % num:
        raise ValueError(f"batch_size={global_batch_size} is not divisible by the {num} devices; "
                         f"set --config.batch_size to a multiple of {num}")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over `data`."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's slice into one global array sharded over `data`."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def global_batch_from_host_copy(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Like `global_batch`, for a batch every process holds in full (e.g. fixed eval images)."""
    count, index = jax.process_count(), jax.process_index()
    per = len(next(iter(batch.values()))) // count
    return global_batch({k: v[index * per:(index + 1) * per] for k, v in batch.items()}, mesh)
