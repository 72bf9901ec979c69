"""One row per run, read from the runs' own files: DIR/results.csv.

Every number comes from what the child wrote: the final metrics from its ``metrics.jsonl`` (the
last evaluation, and the last logged training window), images/s as the median of its
``train/images_per_sec``, the parameter count from its newest checkpoint's metadata, MACs per
image from ``cnnjax.inspect`` (the model of its ``config.json``, at its input size), the status
and wall time from the sweep's ``result.json``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from typing import Any

from cnnjax.sweep import store

FIRST = ("variant", "seed", "workdir", "status")
LAST = ("params", "macs", "images_per_sec", "wall_s", "attempt", "exit_code", "error")
TRAIN_FINALS = ("train/loss", "train/top1", "train/top5")
# Native image sizes and classes of the datasets cnnjax names (for MACs; others: the model's).
DATASETS = {"mnist5k": (28, 10), "uci_digits": (8, 10), "cifar10": (32, 10),
            "cifar100": (32, 100), "mnist": (28, 10), "fashion_mnist": (28, 10)}


def read_rows(path: str) -> list[dict[str, Any]]:
  if not os.path.isfile(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:  # a line torn by a kill
        continue
  return rows


def finals(rows: list[dict[str, Any]]) -> dict[str, float]:
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


def checkpoint_params(run_dir: str) -> int | None:
  """The parameter count of the newest checkpoint, from orbax's tree metadata (no arrays read)."""
  ckpts = os.path.join(run_dir, "checkpoints")
  steps = sorted((int(s) for s in os.listdir(ckpts) if s.isdigit()), reverse=True) if (
      os.path.isdir(ckpts)) else []
  for step in steps:
    try:
      with open(os.path.join(ckpts, str(step), "state", "_METADATA")) as f:
        tree = json.load(f)["tree_metadata"]
    except (OSError, KeyError, json.JSONDecodeError):
      continue
    return sum(math.prod(v["value_metadata"].get("write_shape") or [1])
               for k, v in tree.items() if k.startswith("('params',"))
  return None


def model_macs(config: dict) -> int | None:
  """MACs per image of the run's model at its input size (``cnnjax.inspect``)."""
  from cnnjax import models  # pylint: disable=import-outside-toplevel  # JAX, only when needed
  from cnnjax.inspect import summary  # pylint: disable=import-outside-toplevel
  name = config.get("model")
  data = config.get("data", {})
  try:
    spec = models.get_spec(name)
    native, classes = DATASETS.get(config.get("dataset"), (spec.input_size, spec.num_classes))
    fixed = spec.min_input_size == spec.input_size
    size = data.get("image_size") or data.get("crop") or (spec.input_size if fixed else native)
    options = {k: v for k, v in (config.get("model_options") or {}).items() if v is not None}
    result = summary.summarize(name, max(size, spec.min_input_size),
                               config.get("num_classes") or classes, **options)
  except Exception:  # pylint: disable=broad-except  # a model inspect can't trace: no MACs
    return None
  return int(result.totals["macs"])


def _model_facts(sweep_dir: str, variant: str, run_dir: str) -> dict[str, Any]:
  """Parameters and MACs of a variant, computed once and kept in DIR/<variant>/model.json."""
  path = os.path.join(sweep_dir, variant, "model.json")
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  try:
    with open(os.path.join(run_dir, "config.json")) as f:
      config = json.load(f)
  except (OSError, json.JSONDecodeError):
    return {}
  facts = {"params": checkpoint_params(run_dir), "macs": model_macs(config)}
  store.write_json(path, facts)
  return facts


def status(run_dir: str, entry: dict) -> str:
  """done | running | failed | stopped (saved, to resume) | pending."""
  result = store.read_result(run_dir) or {}
  if result.get("config_hash") != entry["config_hash"]:
    result = {}
  if result.get("status") == "done":
    return "done"
  if store.is_claimed(run_dir):
    return "running"
  if result.get("status") in ("failed", "stopped"):
    return result["status"]
  return "pending"


def row(sweep_dir: str, entry: dict) -> dict[str, Any]:
  run_dir = os.path.join(sweep_dir, entry["workdir"])
  result = store.read_result(run_dir) or {}
  out: dict[str, Any] = {"variant": entry["variant"], "seed": entry["seed"],
                         "workdir": entry["workdir"], "status": status(run_dir, entry)}
  if out["status"] == "done":
    rows = read_rows(os.path.join(run_dir, "metrics.jsonl"))
    out.update(finals(rows))
    out.update(_model_facts(sweep_dir, entry["variant"], run_dir))
    out["images_per_sec"] = _images_per_sec(rows)
  for key in ("wall_s", "attempt", "exit_code", "error"):
    if key in result and out["status"] != "pending":
      out[key] = result[key]
  return out


def collect(sweep_dir: str, sweep: dict) -> list[dict[str, Any]]:
  return [row(sweep_dir, e) for e in sweep["runs"]]


def columns(rows: list[dict[str, Any]]) -> list[str]:
  metrics = sorted({k for r in rows for k in r if "/" in k})
  return [*FIRST, *metrics, *LAST]


def write_csv(path: str, rows: list[dict[str, Any]], names: list[str]) -> None:
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=names, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
      writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in names})
  os.replace(tmp, path)


def write_results(sweep_dir: str, sweep: dict) -> list[dict[str, Any]]:
  """Rewrites DIR/results.csv from the runs' files; returns the rows."""
  rows = collect(sweep_dir, sweep)
  write_csv(os.path.join(sweep_dir, "results.csv"), rows, columns(rows))
  return rows
