"""One row per trial, read from the runs' own files: DIR/results.csv.

Every number comes from what the child wrote: the final metrics from its ``metrics.jsonl`` (the
last evaluation, and the last logged training window), images/s as the median of its
``train/images_per_sec``, the parameter count from its newest checkpoint's metadata
(``checkpoint.param_count``), MACs per image from ``cnnjax.inspect`` (the model of its
``config.json``, at its input size), the status and wall time from the sweep's ``result.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from cnnjax import files
from cnnjax.sweep import store

FIRST = ("variant", "seed", "workdir", "status")
LAST = ("params", "macs", "images_per_sec", "wall_s", "attempt", "exit_code", "error")
TRAIN_FINALS = ("train/loss", "train/top1", "train/top5")
# Native image sizes and classes of the datasets cnnjax names (for MACs; others: the model's).
DATASETS = {"mnist5k": (28, 10), "uci_digits": (8, 10), "cifar10": (32, 10),
            "cifar100": (32, 100), "mnist": (28, 10), "fashion_mnist": (28, 10)}


@dataclasses.dataclass(frozen=True)
class ResultRow:
  """One line of results.csv: a trial, its status and what its files say."""

  variant: str
  seed: int
  workdir: str
  status: str  # done | running | running elsewhere | failed | stopped | pending
  finals: Mapping[str, float] = dataclasses.field(default_factory=dict)  # done: final metrics
  params: int | None = None
  macs: int | None = None
  images_per_sec: float | None = None
  wall_s: float | None = None
  attempt: int | None = None
  exit_code: int | None = None
  error: str | None = None

  def as_csv(self) -> dict[str, Any]:
    """The row as results.csv's columns."""
    fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "finals"}
    return {**{k: fields[k] for k in FIRST}, **self.finals, **{k: fields[k] for k in LAST}}


def finals(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """The final metrics of a run: its last eval row's ``eval/*`` and last train window's."""
  out: dict[str, float] = {}
  evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
  if evals:
    out.update({k: v for k, v in evals[-1].items() if k.startswith("eval/")})
  trains = [r for r in rows if "train/loss" in r]
  if trains:
    out.update({k: trains[-1][k] for k in TRAIN_FINALS if k in trains[-1]})
  return out


def _images_per_sec(rows) -> float | None:
  rates = [r["train/images_per_sec"] for r in rows if "train/images_per_sec" in r]
  return statistics.median(rates) if rates else None


def model_input(config: Mapping[str, Any]) -> tuple[int, int]:
  """(input size, classes) a run of ``config`` (its config.json) gives its model: the size
  ``ModelSpec.input_size_for`` picks with the dataset's native size (its crop if it has one)."""
  from cnnjax import models  # pylint: disable=import-outside-toplevel  # JAX, only when needed
  spec = models.get_spec(config["model"])
  native, classes = DATASETS.get(config.get("dataset"), (None, spec.num_classes))
  data = config.get("data") or {}
  size = spec.input_size_for(data.get("crop") or native, data.get("image_size"))
  return size, config.get("num_classes") or classes


def model_macs(config: Mapping[str, Any]) -> int | None:
  """MACs per image of the run's model at its input size (``cnnjax.inspect``)."""
  from cnnjax.inspect import summary  # pylint: disable=import-outside-toplevel  # JAX
  try:
    size, classes = model_input(config)
    options = {k: v for k, v in (config.get("model_options") or {}).items() if v is not None}
    result = summary.summarize(config["model"], size, classes, **options)
  except Exception:  # pylint: disable=broad-except  # a model inspect can't trace: no MACs
    return None
  return int(result.totals["macs"])


def _model_facts(sweep_dir: str, variant: str, run_dir: str) -> dict[str, Any]:
  """Parameters and MACs of a variant, computed once and kept in DIR/<variant>/model.json."""
  from cnnjax import checkpoint  # pylint: disable=import-outside-toplevel  # orbax
  path = os.path.join(sweep_dir, variant, "model.json")
  if os.path.isfile(path):
    return files.read_json(path)
  try:
    config = files.read_json(os.path.join(run_dir, files.CONFIG))
  except (OSError, ValueError):
    return {}
  facts = {"params": checkpoint.param_count(os.path.join(run_dir, files.CHECKPOINTS)),
           "macs": model_macs(config)}
  files.write_json(path, facts)
  return facts


def status(run_dir: str, result: store.TrialResult | None, config_hash: str) -> str:
  """done | running | running elsewhere (its ``run.lock`` held by a process no sweep started:
  an orphan of an earlier sweep, a run on another host) | failed | stopped (saved, to resume) |
  pending. A result of another config (the point's config changed since) counts as none."""
  if result is not None and result.config_hash != config_hash:
    result = None
  if result is not None and result.status == "done":
    return "done"
  if store.is_claimed(run_dir):
    return "running"
  if files.is_locked(os.path.join(run_dir, files.RUN_LOCK)):
    return "running elsewhere"
  if result is not None and result.status in ("failed", "stopped"):
    return result.status
  return "pending"


def row(sweep_dir: str, trial: store.Trial) -> ResultRow:
  run_dir = trial.run_dir(sweep_dir)
  result = store.read_result(run_dir)
  state = status(run_dir, result, trial.config_hash)
  facts: dict[str, Any] = {}
  if state == "done":
    metrics = files.read_jsonl(os.path.join(run_dir, files.METRICS))
    model = _model_facts(sweep_dir, trial.variant, run_dir)
    facts = {"finals": finals(metrics), "params": model.get("params"), "macs": model.get("macs"),
             "images_per_sec": _images_per_sec(metrics)}
  if result is not None and state != "pending":
    facts.update(wall_s=result.wall_s, attempt=result.attempt, exit_code=result.exit_code,
                 error=result.error)
  return ResultRow(trial.variant, trial.seed, trial.workdir, state, **facts)


def collect(sweep_dir: str, record: store.SweepRecord) -> list[ResultRow]:
  return [row(sweep_dir, trial) for trial in record.trials]


def columns(rows: Sequence[ResultRow]) -> list[str]:
  metrics = sorted({k for r in rows for k in r.finals})
  return [*FIRST, *metrics, *LAST]


def write_csv(path: str, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
  """The rows as CSV with the columns ``names`` (None is empty), written atomically."""
  text = io.StringIO()
  writer = csv.DictWriter(text, fieldnames=names, extrasaction="ignore")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in names})
  files.write_atomic(path, text.getvalue())


def write_results(sweep_dir: str, record: store.SweepRecord) -> list[ResultRow]:
  """Rewrites DIR/results.csv from the runs' files; returns the rows."""
  rows = collect(sweep_dir, record)
  write_csv(os.path.join(sweep_dir, "results.csv"), [r.as_csv() for r in rows], columns(rows))
  return rows
