"""Data parallelism over all devices (ARCHITECTURE.md, decision 10).

A 1-D `jax.sharding.Mesh` named "data" spans every device (of every host after
`jax.distributed.initialize()`); simulated batches are sharded along their first axis, parameters
and optimiser state are replicated, and XLA inserts the gradient all-reduce. Random draws do not
depend on the sharding (threefry is partitionable), so one device and N devices see the same data
and give the same loss curve up to float summation order.

Test on one machine with `XLA_FLAGS=--xla_force_host_platform_device_count=N` (set before JAX starts).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: all)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh; the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        from .config import ConfigError

        raise ConfigError("training.batch_size", f"{batch_size} is not divisible by the {n} devices")


def shard_batch(tree, mesh: Mesh, batch_size: int):
    """Constrain the arrays of `tree` (inside `jit`) whose first axis is the batch to be split along it.

    Other leaves (e.g. one protocol's features shared by the batch) stay replicated.
    """

    def constrain(x):
        if x.ndim and x.shape[0] == batch_size:
            return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))
        return jax.lax.with_sharding_constraint(x, replicated(mesh))

    return jax.tree_util.tree_map(constrain, tree)


def replicate(tree, mesh: Mesh):
    """Place every array of `tree` on all devices (parameters, optimiser state)."""
    return jax.device_put(tree, replicated(mesh))
