"""What a trained run predicts for each example of its evaluation split: the logits, in the
split's order, with the labels beside them (a confusion matrix, the mistakes to look at, a
calibration curve). ``loop.evaluate`` gives only the metrics' sums.

The model sees exactly what evaluation gives it: the same checkpoint (or ``config.init_from``
weights), the same input transform, the same batches sharded over the devices, the padding of
the last batch dropped.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnnjax import parallel
from cnnjax.train import loop, state as state_lib
from cnnjax.train.resolve import Run, resolve


@dataclasses.dataclass(frozen=True)
class Predictions:
  """Per-example outputs over a split, in its order."""

  logits: np.ndarray  # (examples, classes), float32
  labels: np.ndarray  # (examples,), int32
  step: int  # of the checkpoint (0: the weights of config.init_from)

  @property
  def predicted(self) -> np.ndarray:
    """The top-1 class of each example."""
    return self.logits.argmax(-1)


def _logits(state: state_lib.TrainState, batch, *, model, input_fn):
  logits = model.apply(state.variables(), input_fn(batch["image"]), train=False)
  return logits.astype(jnp.float32), batch["label"]


def split_logits(run: Run, state: state_lib.TrainState) -> tuple[np.ndarray, np.ndarray]:
  """(logits, labels) of every example of ``run``'s evaluation split, in order."""
  rep = parallel.replicated(run.mesh)
  forward = jax.jit(functools.partial(_logits, model=run.model, input_fn=run.input_fn),
                    in_shardings=(rep, parallel.batch_sharding(run.mesh)), out_shardings=rep)
  outputs = [jax.device_get(forward(state, batch)) for batch in loop.eval_batches(run)]
  n = len(run.eval_data)  # the padded rows are the last ones of the last batch
  logits = np.concatenate([o[0] for o in outputs])[:n]
  labels = np.concatenate([o[1] for o in outputs])[:n].astype(np.int32)
  return logits, labels


def predict(config: ml_collections.ConfigDict, workdir: str,
            devices: Sequence[jax.Device] | None = None) -> Predictions:
  """The logits of the newest checkpoint in ``workdir`` (else of ``config.init_from``'s weights)
  for every example of the config's evaluation split. Reads only, as ``loop.evaluate`` does, and
  prints nothing (the step is ``Predictions.step``)."""
  run = resolve(config, devices)
  step, state, _ = loop.state_to_evaluate(run, workdir, quiet=True)
  logits, labels = split_logits(run, state)
  return Predictions(logits, labels, step)
