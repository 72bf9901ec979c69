"""Declaring a sweep, expanding it into trials (point × seed) and checking every one before
anything starts.

An experiment file may define ``get_sweep(arg)`` beside ``get_config(arg)``; it returns a
``Sweep``: the axes (config key → values, combined with ``product``, ``zipped``, ``chain`` or
given as named ``variants``), the seeds (a field of their own, never an axis), the metric to
compare and optionally the baseline variant. A plain dict of axes is a ``product``.

  def get_sweep(arg):
    return sweep.Sweep({"model_options.activation": ["relu", "gelu"]}, seeds=range(5))
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from cnnjax import config as config_lib
from cnnjax.errors import UserError, unknown
from cnnjax.sweep import naming, store

Overrides = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Axes:
  """Points of a sweep: each an optional name and the config overrides it makes."""

  points: tuple[tuple[str | None, Overrides], ...]


def _as_axes(axes: Axes | Mapping[str, Sequence[Any]]) -> Axes:
  if isinstance(axes, Axes):
    return axes
  if isinstance(axes, Mapping):
    return product(axes)
  raise UserError(f"sweep axes must be a dict of key -> values or Axes, got {type(axes).__name__}.")


def _values(key: str, values) -> list[Any]:
  if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
    raise UserError(f"sweep axis {key!r} must list its values, got {values!r}.")
  return list(values)


def product(*parts: Axes | Mapping[str, Sequence[Any]]) -> Axes:
  """Every combination: ``product({"a": [1, 2], "b": [3, 4]})`` has 4 points; parts that are
  dicts are themselves products of their keys."""
  expanded: list[Axes] = []
  for part in parts:
    if isinstance(part, Mapping):
      expanded += [Axes(tuple((None, {k: v}) for v in _values(k, vs))) for k, vs in part.items()]
    else:
      expanded.append(_as_axes(part))
  points = []
  for combo in itertools.product(*(a.points for a in expanded)):
    names = [n for n, _ in combo]
    merged: Overrides = {}
    for _, o in combo:
      merged.update(o)
    points.append((",".join(names) if all(names) and names else None, merged))
  return Axes(tuple(points))


def zipped(axes: Mapping[str, Sequence[Any]]) -> Axes:
  """The i-th values of every key together: ``zipped({"a": [1, 2], "b": [3, 4]})`` has 2."""
  lists = {k: _values(k, v) for k, v in axes.items()}
  lengths = {len(v) for v in lists.values()}
  if len(lengths) > 1:
    raise UserError(f"zipped sweep axes need equal lengths, got "
                    f"{ {k: len(v) for k, v in lists.items()} }.")
  return Axes(tuple((None, dict(zip(lists, vs))) for vs in zip(*lists.values())))


def chain(*parts: Axes | Mapping[str, Sequence[Any]]) -> Axes:
  """The points of each part, one after the other."""
  return Axes(tuple(p for part in parts for p in _as_axes(part).points))


def variants(table: Mapping[str, Overrides]) -> Axes:
  """Named points: ``variants({"plain20": {"model": "resnet20", ...}, ...})``."""
  return Axes(tuple((name, dict(o)) for name, o in table.items()))


@dataclasses.dataclass(frozen=True)
class Sweep:
  """What ``get_sweep(arg)`` returns."""

  axes: Axes | Mapping[str, Sequence[Any]]
  seeds: Sequence[int] = (0, 1, 2)
  metric: str = "eval/top1"
  baseline: str | None = None  # a variant's name; default: the first point


@dataclasses.dataclass(frozen=True)
class SweepPlan:
  """The expanded, checked sweep: every trial (point × seed) and how they are compared."""

  trials: tuple[store.Trial, ...]  # without their command lines (``store.write_sweep`` adds them)
  variants: dict[str, Overrides]  # name -> the keys it changes from the base config
  metric: str
  baseline: str
  base_hash: str


def load(config_spec: str) -> Sweep:
  """``get_sweep(arg)`` of an experiment file (``path.py[:arg]``)."""
  declared = config_lib.call_experiment(config_spec, "get_sweep", required=False)
  path = config_spec.partition(":")[0]
  if declared is None:
    raise UserError(f"{path} defines no get_sweep(arg); --sweep needs one (see "
                    "experiments/ablations.py).")
  if not isinstance(declared, Sweep):
    raise UserError(f"{path}: get_sweep must return cnnjax.sweep.Sweep, got "
                    f"{type(declared).__name__}.")
  return declared


def check_key(config: ml_collections.ConfigDict, key: str, where: str = "sweep key") -> None:
  """A key that is not in the config is one line naming the close match."""
  keys = config_lib.leaf_keys(config)
  if key in keys:
    return
  close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  raise UserError(f"{where} {key!r} is not in the config.{hint} See experiments/base.py for "
                  "every key.")


def _with_point(config: ml_collections.ConfigDict, overrides: Overrides):
  """The config of a point; a value that doesn't fit is named as the sweep's."""
  try:
    return config_lib.with_values(config, overrides)
  except UserError as e:  # "config.key=value doesn't fit ..." -> "sweep value key=value ..."
    raise UserError(f"sweep value {str(e).removeprefix('config.')}") from None


def config_hash(config: ml_collections.ConfigDict) -> str:
  text = json.dumps(json.loads(config.to_json_best_effort()), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_model(config: ml_collections.ConfigDict) -> None:
  """The model of a point, built and traced abstractly (as a single run's start-up does), at
  ``data.image_size`` or the model's natural input size: unknown options fail here."""
  # pylint: disable=import-outside-toplevel  # JAX and the models, only when expanding
  from cnnjax import models
  from cnnjax.train import resolve
  resolve.check(config)
  model_spec = models.get_spec(config.model)
  size = model_spec.input_size_for(requested=config.data.image_size)
  model = models.create(config.model, num_classes=config.num_classes or model_spec.num_classes,
                        **config.model_options)
  resolve.check_model_input(model, (1, size, size, config.data.channels or model_spec.channels))


def _check_sweep(sweep: Sweep, axes: Axes, config, cli_keys: Iterable[str]) -> None:
  if not axes.points:
    raise UserError("the sweep has no points.")
  seeds = list(sweep.seeds)
  if not seeds or len(set(seeds)) != len(seeds):
    raise UserError(f"sweep seeds must be distinct and at least one, got {seeds}.")
  swept = {k for _, o in axes.points for k in o}
  if "seed" in swept:
    raise UserError("'seed' is not an axis: list the seeds in Sweep(seeds=...).")
  for key in sorted(swept):
    check_key(config, key)
  both = sorted(swept & set(cli_keys))
  if both:
    raise UserError(f"--config.{both[0]} is also a sweep axis; drop the flag or the axis.")


def expand(sweep: Sweep, config: ml_collections.ConfigDict,
           cli_keys: Iterable[str] = ()) -> SweepPlan:
  """Every point × seed, named and checked as a single run's config is (``validate``)."""
  axes = _as_axes(sweep.axes)
  _check_sweep(sweep, axes, config, cli_keys)
  names = naming.names(axes.points, config)
  variants: dict[str, Overrides] = {}
  trials = []
  for name, (_, overrides) in zip(names, axes.points):
    if name in variants:
      raise UserError(f"two sweep points are both named {name!r}; give them distinct values or "
                      "names (variants).")
    variants[name] = overrides
    point = _with_point(config, overrides)
    try:
      _check_model(point)
    except UserError as e:
      raise UserError(f"sweep point {name!r}: {e}") from None
    for seed in sweep.seeds:
      run_config = config_lib.with_values(point, {"seed": seed})
      try:
        config_lib.validate(run_config)
      except UserError as e:
        raise UserError(f"sweep point {name!r}, seed {seed}: {e}") from None
      trials.append(store.Trial(name, seed, overrides, config_hash(run_config),
                                store.trial_dir(name, seed)))
  baseline = sweep.baseline if sweep.baseline is not None else names[0]
  if baseline not in variants:
    raise unknown("baseline variant", baseline, variants)
  return SweepPlan(tuple(trials), variants, sweep.metric, baseline, config_hash(config))
