"""Optimizers and learning-rate schedules from explicit arguments (the loop reads the config).

``rmsprop`` uses ``decay`` (the squared-gradient average's decay), ``eps`` and ``momentum``.
Weight decay: ``adamw`` decouples it (Loshchilov & Hutter); for ``sgd``, ``momentum``, ``nesterov``
and ``adam`` it is L2 added to the gradient, as PyTorch's ``weight_decay`` does. Only kernels
(rank ≥ 2) decay unless ``decay_all`` is set: biases and BatchNorm scales are left alone.

``lars`` (You et al. 2017) and ``lamb`` (You et al. 2020) are optax's, the decay masked as above.
LARS adds the decay to the gradient before its trust ratio ``trust_coefficient·‖w‖/‖g + λw‖``
and momentum; the ratio applies to kernels only, whatever ``decay_all`` (biases and BatchNorm
parameters take the plain rate, as the MLPerf ResNet-50 submissions do). LAMB decays inside its
Adam step and takes the trust ratio of every leaf, as optax does.

The numbers a sweep varies most (``TRACED``) can be given as arrays, traced: the train step then
takes them as arguments instead of baking them into its program as constants (as optax would,
google-deepmind/optax#577), so runs that differ only in them share one compiled program, in
memory and in the persistent compilation cache. Only nonzero values are traced: 0 switches a part
off (no weight decay, no momentum buffer), which is a different program.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
import optax

from cnnjax.errors import unknown

SCHEDULES = ("constant", "cosine", "step", "polynomial")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "lars", "lamb")
# Traced when nonzero; results are bit for bit those of constants. Not traced: the step counts
# (warm-up, decay steps: they fix the schedule's shape), the values optax turns into
# ``1 - value`` in Python's double precision (Adam's b1 and b2, RMSProp's decay, the schedule's
# decay_factor and final fraction), which float32 arithmetic on a traced value would round
# differently, and label smoothing: XLA folds a constant one into the one-hot targets and sums
# the loss in another order (a LeNet-5 loss moved by 5e-7; docs/performance.md, sweeps).
TRACED = ("learning_rate", "momentum", "weight_decay")


def traced(values: Mapping[str, float]) -> dict[str, np.float32]:
  """The nonzero ``TRACED`` entries of ``values``, as float32 scalars for the train step."""
  return {k: np.float32(v) for k, v in values.items() if k in TRACED and v}


def is_on(value) -> bool:
  """Whether a hyperparameter switches its part on: a traced value (only nonzero ones are) does."""
  return isinstance(value, jax.Array) or bool(value)


def schedule(name: str, *, base_lr: float, total_steps: int, warmup_steps: int = 0,
             decay_steps: tuple[int, ...] = (), decay_factor: float = 0.1,
             final_lr_fraction: float = 0.0, power: float = 1.0) -> optax.Schedule:
  """Linear warm-up from 0 to ``base_lr`` over ``warmup_steps``, then ``name``:

  * ``constant``;
  * ``cosine``: down to ``final_lr_fraction·base_lr`` at ``total_steps``;
  * ``polynomial``: ``end + (base_lr − end)·(1 − t/T)^power`` with ``end =
    final_lr_fraction·base_lr``, ``t`` counted from the warm-up's end and ``T`` the steps left
    after it (MLPerf's ResNet-50 rule with ``power`` 2);
  * ``step``: times ``decay_factor`` at each step in ``decay_steps`` (counted from the start).
  """
  if name not in SCHEDULES:
    raise unknown("schedule", name, SCHEDULES)
  rest = max(total_steps - warmup_steps, 1)
  if name == "constant":
    main = optax.constant_schedule(base_lr)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(base_lr, rest, alpha=final_lr_fraction)
  elif name == "polynomial":
    main = optax.polynomial_schedule(base_lr, final_lr_fraction * base_lr, power, rest)
  else:
    # Steps count from the start; a boundary inside the warm-up applies when it ends, and
    # boundaries that coincide (epochs rounding to one step) multiply.
    boundaries: dict[int, float] = {}
    for s in decay_steps:
      at = max(int(s) - warmup_steps, 0)
      boundaries[at] = boundaries.get(at, 1.0) * decay_factor
    main = optax.piecewise_constant_schedule(base_lr, boundaries)
  if warmup_steps <= 0:
    return main
  warm = optax.linear_schedule(0.0, base_lr, warmup_steps)
  return optax.join_schedules([warm, main], [warmup_steps])


def _kernels_only(params):
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def optimizer(name: str, learning_rate: optax.ScalarOrSchedule, *, momentum: float = 0.9,
              weight_decay: float = 0.0, decay_all: bool = False, b1: float = 0.9,
              b2: float = 0.999, eps: float = 1e-8, decay: float = 0.9,
              trust_coefficient: float = 0.001) -> optax.GradientTransformation:
  """The optax optimizer ``name``; see the module docstring for weight decay."""
  if name not in OPTIMIZERS:
    raise unknown("optimizer", name, OPTIMIZERS)
  mask = None if decay_all else _kernels_only
  if name == "lars":
    return optax.lars(learning_rate, weight_decay=weight_decay,
                      weight_decay_mask=True if decay_all else _kernels_only,
                      trust_coefficient=trust_coefficient, eps=eps,
                      trust_ratio_mask=_kernels_only, momentum=momentum)
  if name == "lamb":
    return optax.lamb(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
  chain = []
  if name == "adamw":
    chain.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                             mask=mask))
    return optax.chain(*chain)
  if is_on(weight_decay):
    chain.append(optax.add_decayed_weights(weight_decay, mask=mask))
  if name == "adam":
    chain.append(optax.adam(learning_rate, b1=b1, b2=b2, eps=eps))
  elif name == "rmsprop":  # TF's form, as Inception v3 was trained: momentum on the scaled step
    chain.append(optax.rmsprop(learning_rate, decay=decay, eps=eps,
                               momentum=momentum if is_on(momentum) else None))
  else:
    chain.append(optax.sgd(learning_rate, momentum=None if name == "sgd" else momentum,
                           nesterov=name == "nesterov"))
  return optax.chain(*chain)
