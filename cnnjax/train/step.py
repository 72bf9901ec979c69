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
from cnnjax.train import state as state_lib
from cnnjax.train.state import TrainState

Batch = dict[str, jax.Array]


def train_step(state: TrainState, batch: Batch, key: jax.Array, *, model: nn.Module,
               tx: optax.GradientTransformation, input_fn: Callable[[jax.Array], jax.Array],
               label_smoothing: float = 0.0, aux_loss_weight: float = 0.0,
               train_mode: bool = True, frozen: frozenset[str] = frozenset(),
               augment: augment_lib.Augment = augment_lib.NONE, grad_accum_steps: int = 1,
               ema_decay: float = 0.0, ema_warmup: bool = False
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on ``batch``; dropout draws from ``fold_in(key, step)``. ``augment`` is
  applied first, from the draws the training stream put in ``batch`` (with mixup or CutMix the
  targets are mixed and train top-1 counts the dominant label: ``metrics.dominant``).

  The loss is the mean cross-entropy plus ``aux_loss_weight`` times that of each auxiliary head
  (GoogLeNet, Inception v3). ``train_mode=False`` runs the model in inference mode (BatchNorm on
  running statistics, no dropout: a linear probe); BatchNorm statistics of the ``frozen``
  top-level modules are kept as they were. Returns the new state and metric sums of the main
  head.

  ``grad_accum_steps`` K > 1 splits the batch into K micro-batches (rows ``i, i + K, …``: each
  device keeps its own rows) run one after the other in a ``lax.scan``, so activations are held
  for one micro-batch at a time; the update uses the mean of their K gradients, equal to the
  whole batch's gradient up to float rounding for a model without BatchNorm. BatchNorm
  normalises each micro-batch by its own statistics and updates its running averages K times,
  once per micro-batch, as K forward passes in PyTorch would. Micro-batch ``i`` draws dropout
  from ``fold_in(fold_in(key, step), i)``. With ``ema_decay`` the moving average of the weights
  is updated after the step (``state.ema_decay``'s rule).
  """
  x, labels = input_fn(augment.apply(batch["image"], batch)), batch["label"]
  x, partner, lam = augment.mix(x, labels, batch)  # mixup / CutMix: (x, None, None) when off
  dropout_key = jax.random.fold_in(key, state.step)

  def gradients(batch_stats, x, targets, rng):
    labels, partner, lam = targets  # partner and lam: None without mixup / CutMix

    def loss_fn(params):
      variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
      logits, new = model.apply(variables, x, train=train_mode, rngs={"dropout": rng},
                                mutable=["batch_stats", "intermediates"])
      per_example = metrics.cross_entropy(logits, labels, label_smoothing, partner, lam)
      loss = jnp.mean(per_example)
      for aux in new.get("intermediates", {}).get("aux_logits", ()):
        loss += aux_loss_weight * jnp.mean(metrics.cross_entropy(aux, labels, label_smoothing,
                                                                 partner, lam))
      return loss, (logits, per_example, new.get("batch_stats", {}))

    return jax.grad(loss_fn, has_aux=True)(state.params)

  targets = (labels, partner, lam)
  if grad_accum_steps == 1:
    grads, (logits, per_example, batch_stats) = gradients(state.batch_stats, x, targets,
                                                          dropout_key)
  else:  # the batch is mixed whole (partners across it), then split with its targets
    grads, (logits, per_example, batch_stats) = _accumulate(
        gradients, grad_accum_steps, state, x, targets, dropout_key)
  batch_stats = {k: state.batch_stats[k] if k in frozen else v for k, v in batch_stats.items()}
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  if ema_decay:
    new_state = state_lib.update_ema(new_state, state_lib.ema_decay(ema_decay, state.step,
                                                                    ema_warmup))
  return new_state, metrics.classification_sums(logits, metrics.dominant(labels, partner, lam),
                                                loss=per_example)


def _accumulate(gradients, k: int, state: TrainState, x, targets, key):
  """``gradients`` over ``k`` micro-batches in a scan: the mean gradient, the outputs in the
  batch's row order, the batch statistics after the last micro-batch."""
  def split(a):  # (B, ...) -> (k, B/k, ...); micro-batch i holds rows i, i + k, ...
    return a.reshape(a.shape[0] // k, k, *a.shape[1:]).swapaxes(0, 1)

  def join(a):  # the inverse of split
    return a.swapaxes(0, 1).reshape(-1, *a.shape[2:])

  def body(carry, inputs):
    total, batch_stats = carry
    i, xs, ts = inputs
    grads, (logits, per_example, batch_stats) = gradients(batch_stats, xs, ts,
                                                          jax.random.fold_in(key, i))
    return (jax.tree.map(jnp.add, total, grads), batch_stats), (logits, per_example)

  zeros = jax.tree.map(jnp.zeros_like, state.params)
  (total, batch_stats), (logits, per_example) = jax.lax.scan(
      body, (zeros, state.batch_stats), (jnp.arange(k), split(x), jax.tree.map(split, targets)))
  grads = jax.tree.map(lambda g: g / k, total)
  return grads, (join(logits), join(per_example), batch_stats)


def eval_step(state: TrainState, batch: Batch, *, model: nn.Module,
              input_fn: Callable[[jax.Array], jax.Array]) -> dict[str, jax.Array]:
  """Metric sums over the rows of ``batch`` whose ``mask`` is 1."""
  logits = model.apply(state.variables(), input_fn(batch["image"]), train=False)
  return metrics.classification_sums(logits, batch["label"], batch.get("mask"))
