"""Fine-tuning: which parameters train, and at what learning rate.

Every parameter gets a label: ``frozen`` (no update, and no optimizer state), or a learning-rate
multiplier group. ``optax.multi_transform`` then gives each group its own optimizer, so frozen
parameters carry no optimizer state at all.

Modes (``config.finetune.mode``):
  * ``full``: everything trains (learning-rate multipliers still apply);
  * ``linear_probe``: only the head trains; the backbone is frozen and BatchNorm runs in inference
    mode (running statistics used and left untouched);
  * ``freeze``: every top-level layer up to and including the last one whose name starts with
    ``freeze_until`` is frozen (layers in the order the model creates them), and their BatchNorm
    running statistics are kept. The model still runs in train mode, so frozen BatchNorm layers
    normalise with batch statistics during training (eval uses the kept running ones); for a
    backbone fully in inference mode use ``linear_probe``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax
from flax import traverse_util

from cnnjax.errors import UserError, unknown

MODES = ("full", "linear_probe", "freeze")
FROZEN = "frozen"


def parse_multipliers(specs: Sequence[str]) -> list[tuple[re.Pattern, float]]:
  """``('layer1:0.1', 'fc:10')`` → [(pattern, multiplier)]; the first matching pattern wins."""
  out = []
  for spec in specs:
    pattern, sep, value = spec.rpartition(":")
    try:
      out.append((re.compile(pattern), float(value)))
      if not sep or not pattern:
        raise ValueError
    except (ValueError, re.error):
      raise UserError(f"bad learning-rate multiplier {spec!r}; write 'PATTERN:MULTIPLIER', "
                      "e.g. 'layer1:0.1'.") from None
  return out


def frozen_modules(params: Mapping[str, Any], mode: str, heads: set[str],
                   freeze_until: str | None) -> set[str]:
  """Top-level module names frozen under ``mode``."""
  if mode not in MODES:
    raise unknown("fine-tuning mode", mode, MODES)
  names = list(params)
  if mode == "full":
    return set()
  if mode == "linear_probe":
    head_modules = {p.split("/")[0] for p in heads}
    return {n for n in names if n not in head_modules}
  hits = [i for i, n in enumerate(names) if freeze_until and n.startswith(freeze_until)]
  if not hits:
    raise unknown("layer for freeze_until", freeze_until, names)
  return set(names[:hits[-1] + 1])


def labels(params: Mapping[str, Any], frozen: set[str],
           multipliers: Sequence[tuple[re.Pattern, float]]) -> Any:
  """A tree like ``params`` of group labels: ``frozen`` or ``lr_x<multiplier>``."""
  def label(path: tuple[str, ...]) -> str:
    if path[0] in frozen:
      return FROZEN
    joined = "/".join(path)
    mult = next((m for p, m in multipliers if p.search(joined)), 1.0)
    return f"lr_x{mult:g}"
  flat = traverse_util.flatten_dict(dict(params))
  return traverse_util.unflatten_dict({k: label(k) for k in flat})


def partitioned(make_tx: Callable[[float], optax.GradientTransformation], param_labels: Any
                ) -> optax.GradientTransformation:
  """One optimizer per label: ``make_tx(multiplier)`` for each group, zero updates for frozen."""
  groups = set(jax.tree.leaves(param_labels))
  transforms = {g: optax.set_to_zero() if g == FROZEN else make_tx(float(g[len("lr_x"):]))
                for g in groups}
  return optax.multi_transform(transforms, param_labels)
