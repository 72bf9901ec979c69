"""Data parallelism with ``jax.jit`` over a device mesh: the batch is sharded, parameters replicated.

One mesh axis, ``data``, spans every device of every process. Each process feeds the rows of the
global batch that its own devices hold; ``jax.make_array_from_process_local_data`` stitches the
global array together. BatchNorm statistics under this sharding are global-batch statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cnnjax.errors import UserError

DATA_AXIS = "data"


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run (``jax.distributed.initialize``); arguments are auto-detected on
  TPU pods and SLURM/MPI clusters when left None."""
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D ``data`` mesh over ``devices`` (default: every device of every process)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh, what: str = "batch_size") -> None:
  n = mesh.devices.size
  if global_batch % n:
    raise UserError(f"{what}={global_batch} is not divisible by the {n} devices; use a multiple "
                    f"of {n} (e.g. {max(n, global_batch // n * n)}).")


def to_global(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows of a batch → global arrays sharded along ``data``."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
