"""Data parallelism with ``jax.jit`` over a device mesh: the batch is sharded, parameters replicated.

One mesh axis, ``data``, spans every device of every process; mesh position ``i`` holds rows
``[i·b, (i+1)·b)`` of a global batch (``b`` = batch / devices). Each process reads exactly the rows
its own devices hold (``process_rows``) and ``to_global`` puts each device's slice on that device,
so any split of the same mesh over processes places the same examples on the same devices as one
process does. BatchNorm statistics under this sharding are global-batch statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cnnjax.errors import UserError

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D ``data`` mesh over ``devices`` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """Arrays split along ``batch_axis`` over ``data`` (axis 1: a stack of batches)."""
  return NamedSharding(mesh, P(*[None] * batch_axis, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh, what: str = "batch_size") -> None:
  n = mesh.devices.size
  if global_batch % n:
    raise UserError(f"{what}={global_batch} is not divisible by the {n} devices; use a multiple "
                    f"of {n} (e.g. {max(n, global_batch // n * n)}).")


def _local_devices(mesh: Mesh) -> list[jax.Device]:
  return [d for d in mesh.devices.flat if d.process_index == jax.process_index()]


def process_rows(mesh: Mesh, global_batch: int,
                 devices: Sequence[jax.Device] | None = None) -> np.ndarray:
  """Sorted indices of the global-batch rows that ``devices`` (default: this process's devices in
  the mesh) hold under ``batch_sharding``: the rows this process must read.

  Derived from the sharding's own device → index map, not from process ids, so it stays right
  for any order of the devices in the mesh."""
  devices = set(_local_devices(mesh) if devices is None else devices)
  index = batch_sharding(mesh).devices_indices_map((global_batch,))
  rows = [np.arange(global_batch)[index[d][0]] for d in mesh.devices.flat if d in devices]
  return np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def to_global(local: dict[str, np.ndarray], mesh: Mesh,
              batch_axis: int = 0) -> dict[str, jax.Array]:
  """This process's rows of a global batch (``process_rows`` order, along ``batch_axis``) →
  global arrays sharded along ``data``, each device given exactly the rows the sharding assigns
  it.

  The global batch is ``local rows × devices / local devices`` (every device holds as many)."""
  local_devices = _local_devices(mesh)
  sharding = batch_sharding(mesh, batch_axis)
  if len(local_devices) == mesh.devices.size:  # one process: its rows are the whole batch
    return jax.device_put(local, sharding)
  n = next(iter(local.values())).shape[batch_axis]
  global_batch = n * mesh.devices.size // len(local_devices)
  rows = process_rows(mesh, global_batch, local_devices)
  index = batch_sharding(mesh).devices_indices_map((global_batch,))
  where = {d: np.searchsorted(rows, np.arange(global_batch)[index[d][0]]) for d in local_devices}

  def place(v: np.ndarray) -> jax.Array:
    shards = [jax.device_put(np.take(v, where[d], axis=batch_axis), d) for d in local_devices]
    shape = (*v.shape[:batch_axis], global_batch, *v.shape[batch_axis + 1:])
    return jax.make_array_from_single_device_arrays(shape, sharding, shards)

  return {k: place(v) for k, v in local.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
