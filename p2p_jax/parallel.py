"""Multi-host start-up, the device mesh and every sharding rule.

The mesh has two axes: `data` (pure data parallelism) and `fsdp` (data parallelism whose
devices also split large parameters and their Adam moments). The batch is split over both;
parameters are replicated unless `mesh.fsdp > 1`, where per-example networks run as one
program per device that gathers them (`gathered_apply`). The rest of the code never asks how
many devices or processes there are.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import flags, logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from p2p_jax.errors import ConfigError

DATA_AXIS, FSDP_AXIS = "data", "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)
# Start-up and barriers wait this long for the slowest process (a loaded machine is slow).
SYNC_TIMEOUT_S = 1800
EXIT_PEER_LOST = 1
PEER_LOST_HELP = ("another process of this run stopped (crashed, killed or unreachable); see "
                  "its log. Start every process again with the same command to resume from "
                  "the latest checkpoint")


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Joins the multi-controller runtime when run as one of several processes.

    Explicit flags win; otherwise TPU VM pod slices and SLURM jobs of several tasks are
    detected by `jax.distributed.initialize()` itself; a lone process does nothing.
    """
    explicit = coordinator_address is not None
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    tpu_pod = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if not (explicit or slurm or tpu_pod):
        return
    # CPU processes exchange collectives through gloo (local runs, tests); GPU/TPU ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # Orbax's barriers too go through the coordination service, with timeouts, instead of
    # collectives (the default), whose first connection gives up after 30 s.
    flags.FLAGS.experimental_orbax_use_distributed_barrier = True
    if explicit:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=SYNC_TIMEOUT_S)
    else:
        jax.distributed.initialize(initialization_timeout=SYNC_TIMEOUT_S)
    logging.info("joined %d processes as process %d", jax.process_count(), jax.process_index())


def is_peer_failure(error: BaseException) -> bool:
    """Whether a runtime error is a lost or unreachable peer (a collective's connection or a
    barrier that timed out), not a bug in this process."""
    text = str(error)
    return jax.process_count() > 1 and any(
        marker in text for marker in ("Gloo", "gloo", "Connection reset", "Connection refused",
                                      "heartbeat", "DEADLINE_EXCEEDED", "Barrier timed out"))


def sync_processes(name: str, timeout_s: int = SYNC_TIMEOUT_S) -> None:
    """Waits until every process reaches the barrier `name`, through the coordination service
    (not a collective, so no device connection is needed); a no-op in a lone process."""
    if jax.process_count() > 1:
        ocp.multihost.sync_global_processes(f"p2p_jax_{name}", timeout=timeout_s,
                                            barrier_sync_fn=ocp.multihost.get_barrier_sync_fn())


def mesh_shape(mesh_config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int]:
    """(data, fsdp) sizes; -1 takes all devices the other axis leaves."""
    data, fsdp = mesh_config.data, mesh_config.fsdp
    if data == -1 and fsdp == -1:
        raise ConfigError("mesh.data and mesh.fsdp cannot both be -1")
    if data == -1:
        data = num_devices // fsdp if fsdp > 0 else 0
    if fsdp == -1:
        fsdp = num_devices // data if data > 0 else 0
    if data <= 0 or fsdp <= 0 or data * fsdp != num_devices:
        raise ConfigError(f"mesh.data={mesh_config.data} x mesh.fsdp={mesh_config.fsdp} does not "
                         f"cover the {num_devices} devices; use -1 for one of them")
    return data, fsdp


def create_mesh(mesh_config: ml_collections.ConfigDict | None = None,
                devices: list[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp) mesh over every device of every process (pure data parallel by default).

    Devices are ordered by process, so each process's devices hold a contiguous block of the
    batch: the block that process reads from its own data shard.
    """
    devices = jax.devices() if devices is None else devices
    if mesh_config is None:
        mesh_config = ml_collections.ConfigDict({"data": -1, "fsdp": 1})
    shape = mesh_shape(mesh_config, len(devices))
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(ordered).reshape(shape), BATCH_AXES)


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    num = mesh.devices.size
    if global_batch_size % num:
        raise ConfigError(f"batch_size={global_batch_size} is not divisible by the {num} devices; "
                         f"set --config.batch_size to a multiple of {num}")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over every device."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def parameter_sharding(shape: tuple[int, ...], mesh: Mesh, min_size: int) -> NamedSharding:
    """FSDP rule: split the largest dimension that divides evenly over `fsdp`, for arrays of at
    least `min_size` elements; everything else (and everything without FSDP) is replicated."""
    fsdp = mesh.shape[FSDP_AXIS]
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return replicated(mesh)
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % fsdp == 0:
            spec = [None] * len(shape)
            spec[axis] = FSDP_AXIS
            return NamedSharding(mesh, PartitionSpec(*spec))
    return replicated(mesh)


def gathered_apply(apply: Callable[..., Any], params: Any, shardings: Any, dtype: Any,
                   x: Any, rng: jax.Array | None = None) -> Any:
    """FSDP as one program per device: `apply(whole_params, x, rng)` on each device's own
    examples of the batch `x`, after gathering the parameters FSDP splits (`shardings`).

    Each split parameter is cast to the network's compute dtype `dtype`, which the network
    casts it to anyway, before its all-gather: in bfloat16 half the bytes move and stay.
    Differentiating this reduce-scatters each weight gradient (in that dtype) straight into its
    parameter's split (the all-gather's transpose), then sums the split over `data` replicas;
    replicated parameters' gradients are summed whole. Those are FSDP's collectives, and no
    others: activations never leave their device, so each device runs the one-device program.
    `apply` must treat examples independently (no batch statistics); `rng` gets the device's
    position folded in, so dropout draws differ between devices.
    """
    mesh = jax.tree.leaves(shardings)[0].mesh
    # Axes of one device are left out: a sum over them would still be an all-reduce in XLA.
    batch_axes = tuple(axis for axis in BATCH_AXES if mesh.shape[axis] > 1)
    replicas = tuple(axis for axis in batch_axes if axis != FSDP_AXIS)

    def gather(leaf: jax.Array, sharding: NamedSharding) -> jax.Array:
        # Every parameter varies over the devices from here on, like the activations it meets
        # (so custom gradients see one type); the transposes sum its gradient over them.
        axes = [axis for axis, name in enumerate(sharding.spec) if name is not None]
        if not axes:  # Replicated: its gradient is summed whole (an all-reduce).
            return jax.lax.pcast(leaf, batch_axes, to="varying")
        moved = leaf.astype(dtype)
        if replicas:  # Summed over `data` replicas after the scatter, on the split alone.
            moved = jax.lax.pcast(moved, replicas, to="varying")
        return jax.lax.all_gather(moved, FSDP_AXIS, axis=axes[0], tiled=True)

    def per_device(local_params: Any, local_x: Any, key: jax.Array | None) -> Any:
        if key is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(batch_axes))
        return apply(jax.tree.map(gather, local_params, shardings), local_x, key)

    specs = jax.tree.map(lambda sharding: sharding.spec, shardings)
    return jax.shard_map(per_device, mesh=mesh,
                         in_specs=(specs, PartitionSpec(batch_axes), PartitionSpec()),
                         out_specs=PartitionSpec(batch_axes))(params, x, rng)


def tree_shardings(abstract_tree: Any, mesh: Mesh, min_size: int) -> Any:
    """Shardings for a state pytree: Adam moments get the same rule as their parameters."""
    return jax.tree.map(lambda x: parameter_sharding(x.shape, mesh, min_size), abstract_tree)


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's slice into one global array sharded over the batch axes.

    This is the loop's one intended host-to-device copy, so it is allowed explicitly under the
    trainer's transfer guard (multi-process assembly goes through a path the guard counts as
    implicit).
    """
    sharding = batch_sharding(mesh)
    with jax.transfer_guard_host_to_device("allow"):
        return {k: jax.make_array_from_process_local_data(sharding, v)
                for k, v in local_batch.items()}


def replicated_from_host(tree: Any, mesh: Mesh) -> Any:
    """Host values that every process holds alike (a PRNG key, evaluator weights) as arrays
    replicated on every device of the mesh: an explicit copy, allowed under the guard."""
    sharding = replicated(mesh)
    with jax.transfer_guard_host_to_device("allow"):
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def placed_like(tree: Any, like: Any) -> Any:
    """Host arrays that every process holds whole, into the shardings (and dtypes) of the
    arrays of `like` (e.g. weights read from a file into a built state)."""
    return jax.tree.map(
        lambda value, leaf: jax.make_array_from_callback(
            leaf.shape, leaf.sharding, lambda index: np.asarray(value[index], leaf.dtype)),
        tree, like)


def global_batch_from_host_copy(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Like `global_batch`, for a batch every process holds in full (e.g. fixed eval images)."""
    count, index = jax.process_count(), jax.process_index()
    per = len(next(iter(batch.values()))) // count
    return global_batch({k: v[index * per:(index + 1) * per] for k, v in batch.items()}, mesh)
