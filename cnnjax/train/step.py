"""Pure train and eval steps. The loop binds the static parts with ``functools.partial`` and
compiles them with ``jax.jit`` over the mesh."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from cnnjax.data import augment as augment_lib
from cnnjax.train import metrics
from cnnjax.train.state import TrainState

Batch = dict[str, jax.Array]


def train_step(state: TrainState, batch: Batch, key: jax.Array, *, model: nn.Module,
               tx: optax.GradientTransformation, input_fn: Callable[[jax.Array], jax.Array],
               label_smoothing: float = 0.0, aux_loss_weight: float = 0.0,
               train_mode: bool = True, frozen: frozenset[str] = frozenset(),
               augment: augment_lib.Augment = augment_lib.NONE
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on ``batch``; dropout draws from ``fold_in(key, step)``. ``augment`` is
  applied first, from the draws the training stream put in ``batch`` (with mixup or CutMix the
  targets are mixed and train top-1 counts the dominant label: ``metrics.dominant``).

  The loss is the mean cross-entropy plus ``aux_loss_weight`` times that of each auxiliary head
  (GoogLeNet, Inception v3). ``train_mode=False`` runs the model in inference mode (BatchNorm on
  running statistics, no dropout: a linear probe); BatchNorm statistics of the ``frozen``
  top-level modules are kept as they were. Returns the new state and metric sums of the main
  head.
  """
  x, labels = input_fn(augment.apply(batch["image"], batch)), batch["label"]
  x, partner, lam = augment.mix(x, labels, batch)  # mixup / CutMix: (x, None, None) when off
  dropout_key = jax.random.fold_in(key, state.step)

  def loss_fn(params):
    variables = {**state.variables(), "params": params}
    logits, new = model.apply(variables, x, train=train_mode, rngs={"dropout": dropout_key},
                              mutable=["batch_stats", "intermediates"])
    per_example = metrics.cross_entropy(logits, labels, label_smoothing, partner, lam)
    loss = jnp.mean(per_example)
    for aux in new.get("intermediates", {}).get("aux_logits", ()):
      loss += aux_loss_weight * jnp.mean(metrics.cross_entropy(aux, labels, label_smoothing,
                                                               partner, lam))
    return loss, (logits, per_example, new.get("batch_stats", {}))

  grads, (logits, per_example, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  batch_stats = {k: state.batch_stats[k] if k in frozen else v for k, v in batch_stats.items()}
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  return new_state, metrics.classification_sums(logits, metrics.dominant(labels, partner, lam),
                                                loss=per_example)


def eval_step(state: TrainState, batch: Batch, *, model: nn.Module,
              input_fn: Callable[[jax.Array], jax.Array]) -> dict[str, jax.Array]:
  """Metric sums over the rows of ``batch`` whose ``mask`` is 1."""
  logits = model.apply(state.variables(), input_fn(batch["image"]), train=False)
  return metrics.classification_sums(logits, batch["label"], batch.get("mask"))
