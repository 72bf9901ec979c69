"""The sweep's summary: one row per variant (DIR/summary.csv, DIR/summary.md), the plots, and
one mean curve per variant for TensorBoard (DIR/<variant>/mean/), all from the runs' files.

For every final metric: ``n``, ``<metric>_mean``, ``<metric>_std`` (sample standard deviation),
``<metric>_ci_low``/``_ci_high`` (95%, t distribution), and against the baseline variant
``<metric>_diff`` (mean minus the baseline's mean), ``<metric>_p_welch`` (Welch's t-test) and
``<metric>_p_paired`` (paired t-test over the seeds both have), each with a ``_holm`` column:
Holm's correction over the variants compared with the baseline, per metric and test.
"""

from __future__ import annotations

import io
import math
import os
import shutil
from typing import Any

import numpy as np

from cnnjax.sweep import results, stats, store

MEAN_DIR = "mean"


def _metric_columns(rows: list[dict[str, Any]]) -> list[str]:
  return sorted({k for r in rows if r["status"] == "done" for k in r if "/" in k})


def _per_variant(rows, metric):
  """variant -> {seed: value} over the done runs."""
  out: dict[str, dict[int, float]] = {}
  for r in rows:
    out.setdefault(r["variant"], {})
    if r["status"] == "done" and r.get(metric) is not None:
      out[r["variant"]][r["seed"]] = float(r[metric])
  return out


def _compare(values: dict[str, dict[int, float]], baseline: str, metric: str) -> dict:
  """Per variant: description, difference from the baseline, raw and Holm-corrected p-values."""
  base = values.get(baseline, {})
  base_mean = stats.describe(list(base.values())).mean
  out, others = {}, [v for v in values if v != baseline]
  welch = [stats.welch(list(values[v].values()), list(base.values())) for v in others]
  paired = [stats.paired(values[v], base)[0] for v in others]
  p = {"p_welch": dict(zip(others, welch)), "p_paired": dict(zip(others, paired)),
       "p_welch_holm": dict(zip(others, stats.holm(welch))),
       "p_paired_holm": dict(zip(others, stats.holm(paired)))}
  for v, seeds in values.items():
    d = stats.describe(list(seeds.values()))
    cols = {"mean": d.mean, "std": d.std, "ci_low": d.ci_low, "ci_high": d.ci_high,
            "diff": d.mean - base_mean if v != baseline else 0.0}
    cols.update({k: table.get(v, math.nan) for k, table in p.items()})
    out[v] = {f"{metric}_{k}": c for k, c in cols.items()}
  return out


def _config_diff(overrides: dict) -> str:
  return " ".join(f"{k}={store.describe(v)}" for k, v in overrides.items()) or "(base)"


def summary_rows(sweep: dict, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per variant of the current sweep, in the sweep's order."""
  out = {v: {"variant": v, "n": sum(r["status"] == "done" for r in rows if r["variant"] == v),
             "runs": sum(r["variant"] == v for r in rows),
             "baseline": v == sweep["baseline"]} for v in sweep["variants"]}
  for metric in _metric_columns(rows):
    for v, cols in _compare(_per_variant(rows, metric), sweep["baseline"], metric).items():
      out[v].update(cols)
  for v in out:
    done = [r for r in rows if r["variant"] == v and r["status"] == "done"]
    for key in ("params", "macs"):
      out[v][key] = done[0].get(key) if done else None
    for key in ("images_per_sec", "wall_s"):
      vals = [r[key] for r in done if r.get(key) is not None]
      out[v][f"{key}_mean"] = float(np.mean(vals)) if vals else None
    out[v]["config_diff"] = _config_diff(sweep["variants"][v])
  return list(out.values())


def _fmt(x, digits=4) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "–"
  if isinstance(x, float):
    return f"{x:.{digits}f}"
  return f"{x:,}" if isinstance(x, int) else str(x)


def markdown(sweep: dict, summary: list[dict[str, Any]]) -> str:
  """summary.md: the compared metric and the loss, with the tests against the baseline."""
  metric = sweep["metric"]
  head = ["variant", "n", f"{metric} mean ± std", "95% CI", "Δ vs baseline",
          "p Welch (Holm)", "p paired (Holm)", "eval/loss mean ± std", "params", "img/s",
          "config"]
  lines = [f"Sweep of `{sweep['config']}`, metric `{metric}`, baseline `{sweep['baseline']}` "
           "(p-values two-sided, Holm-corrected over the variants).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for s in summary:
    g = lambda k, s=s: s.get(f"{metric}_{k}")
    loss = (f"{_fmt(s.get('eval/loss_mean'))} ± {_fmt(s.get('eval/loss_std'))}"
            if "eval/loss_mean" in s else "–")
    cells = [s["variant"] + (" (baseline)" if s["baseline"] else ""), f"{s['n']}/{s['runs']}",
             f"{_fmt(g('mean'))} ± {_fmt(g('std'))}",
             f"[{_fmt(g('ci_low'))}, {_fmt(g('ci_high'))}]",
             "–" if s["baseline"] else f"{g('diff'):+.4f}" if g("diff") is not None else "–",
             "–" if s["baseline"] else _fmt(g("p_welch_holm"), 3),
             "–" if s["baseline"] else _fmt(g("p_paired_holm"), 3), loss,
             _fmt(s.get("params")), _fmt(s.get("images_per_sec_mean"), 0),
             f"`{s['config_diff']}`"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def mean_curves(sweep_dir: str, sweep: dict) -> dict[str, dict[int, dict[str, float]]]:
  """Per variant, per step, the mean over the done seeds of every scalar all of them logged."""
  from cnnjax.sweep.results import read_rows  # pylint: disable=import-outside-toplevel
  curves = {}
  for variant, entries in store.variant_dirs(sweep).items():
    logs = [read_rows(os.path.join(sweep_dir, e["workdir"], "metrics.jsonl")) for e in entries
            if store.is_done(os.path.join(sweep_dir, e["workdir"]), e["config_hash"])]
    if not logs:
      continue
    by_step = [{r["step"]: r for r in rows} for rows in logs]
    steps = sorted(set.intersection(*(set(b) for b in by_step)))
    curves[variant] = {}
    for step in steps:
      keys = set.intersection(*(set(b[step]) for b in by_step)) - {"step"}
      curves[variant][step] = {k: float(np.mean([b[step][k] for b in by_step])) for k in keys}
  return curves


def write_tensorboard(sweep_dir: str, curves) -> None:
  """DIR/<variant>/mean/: the mean curve as event files (and metrics.jsonl), rewritten."""
  from cnnjax.train.writers import MetricWriter  # pylint: disable=import-outside-toplevel
  for variant, steps in curves.items():
    path = os.path.join(sweep_dir, variant, MEAN_DIR)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    writer = MetricWriter(path, total_steps=max(steps, default=0), start_step=0,
                          stream=io.StringIO())
    for step, scalars in steps.items():
      writer.write(step, dict(sorted(scalars.items())))
    writer.close()


def write_all(sweep_dir: str, sweep: dict) -> list[dict[str, Any]]:
  """results.csv, summary.csv, summary.md, curves.png, final.png and the mean curves."""
  from cnnjax.sweep import plots  # pylint: disable=import-outside-toplevel  # matplotlib
  rows = results.write_results(sweep_dir, sweep)
  summary = summary_rows(sweep, rows)
  names = ["variant", "n", "runs", "baseline"] + sorted(
      {k for s in summary for k in s} - {"variant", "n", "runs", "baseline", "config_diff"}
  ) + ["config_diff"]
  results.write_csv(os.path.join(sweep_dir, "summary.csv"), summary, names)
  path = os.path.join(sweep_dir, "summary.md")
  with open(f"{path}.tmp.{os.getpid()}", "w") as f:
    f.write(markdown(sweep, summary))
  os.replace(f"{path}.tmp.{os.getpid()}", path)
  curves = mean_curves(sweep_dir, sweep)
  write_tensorboard(sweep_dir, curves)
  plots.curves(sweep_dir, sweep, os.path.join(sweep_dir, "curves.png"))
  plots.finals(sweep, rows, os.path.join(sweep_dir, "final.png"))
  return summary
