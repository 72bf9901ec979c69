"""Writes each device's shard of the first global batches, as one process of a run sees them.

  python tests/multihost_batches.py OUT DATA_DIR [COORDINATOR NUM_PROCESSES PROCESS_ID]

tests/test_multihost.py runs it as 1 process × 4 devices and as 2 processes × 2 devices and
compares the files: ``OUT/{train,eval}{i}_{key}_{mesh position}.npy``.
"""

import os
import sys

# The repo root instead of tests/, whose inspect/ package would shadow the standard library's.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=wrong-import-position

from cnnjax import distributed  # pylint: disable=wrong-import-position

TRAIN_BATCH, EVAL_BATCH, STEPS = 128, 384, 3  # eval: 1,000 examples, the third batch padded


def main(out: str, data_dir: str, coordinator: str | None = None, num_processes: str = "1",
         process_id: str = "0") -> None:
  if coordinator:
    distributed.initialize(coordinator, int(num_processes), int(process_id), timeout_s=60)
  # pylint: disable=import-outside-toplevel  # after jax.distributed.initialize
  from cnnjax import parallel
  from cnnjax.data import pipeline, sources
  mesh = parallel.make_mesh()
  position = {d: i for i, d in enumerate(mesh.devices.flat)}
  train = sources.load("mnist5k", "train", data_dir).in_memory()
  test = sources.load("mnist5k", "test", data_dir).in_memory()
  stream = pipeline.train_stream(train, global_batch=TRAIN_BATCH, seed=0, max_shift=2, flip=True,
                                 rows=parallel.process_rows(mesh, TRAIN_BATCH))
  evals = pipeline.eval_batches(test, global_batch=EVAL_BATCH,
                                rows=parallel.process_rows(mesh, EVAL_BATCH))
  batches = [(f"train{i}", next(stream)) for i in range(STEPS)]
  batches += [(f"eval{i}", b) for i, b in enumerate(evals)]
  stacked = {k: np.stack([b[k] for _, b in batches[:STEPS]]) for k in batches[0][1]}
  os.makedirs(out, exist_ok=True)
  for name, batch, axis in [(n, b, 0) for n, b in batches] + [("stacked", stacked, 1)]:
    for key, array in parallel.to_global(batch, mesh, axis).items():
      for shard in array.addressable_shards:
        np.save(os.path.join(out, f"{name}_{key}_{position[shard.device]}.npy"), shard.data)


if __name__ == "__main__":
  main(*sys.argv[1:])
