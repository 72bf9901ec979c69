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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnjax import files
from cnnjax.sweep import naming, results, stats, store

MEAN_DIR = "mean"


def _metric_columns(rows: Sequence[results.ResultRow]) -> list[str]:
  return sorted({k for r in rows if r.status == "done" for k in r.finals})


def per_variant(rows: Sequence[results.ResultRow], metric: str) -> dict[str, dict[int, float]]:
  """variant -> {seed: value} over the done runs."""
  out: dict[str, dict[int, float]] = {}
  for r in rows:
    out.setdefault(r.variant, {})
    if r.status == "done" and r.finals.get(metric) is not None:
      out[r.variant][r.seed] = float(r.finals[metric])
  return out


def _compare(values: dict[str, dict[int, float]], baseline: str, metric: str) -> dict:
  """Per variant: its mean and interval, difference from the baseline, raw and Holm-corrected
  p-values."""
  base = values.get(baseline, {})
  base_mean = stats.summarize_values(list(base.values())).mean
  out, others = {}, [v for v in values if v != baseline]
  welch = [stats.welch(list(values[v].values()), list(base.values())) for v in others]
  paired = [stats.paired(values[v], base)[0] for v in others]
  pvalues = {"p_welch": dict(zip(others, welch)), "p_paired": dict(zip(others, paired)),
             "p_welch_holm": dict(zip(others, stats.holm(welch))),
             "p_paired_holm": dict(zip(others, stats.holm(paired)))}
  for variant, seeds in values.items():
    summary = stats.summarize_values(list(seeds.values()))
    cols = {"mean": summary.mean, "std": summary.std, "ci_low": summary.ci_low,
            "ci_high": summary.ci_high,
            "diff": summary.mean - base_mean if variant != baseline else 0.0}
    cols.update({k: table.get(variant, math.nan) for k, table in pvalues.items()})
    out[variant] = {f"{metric}_{k}": c for k, c in cols.items()}
  return out


def _config_diff(overrides: Mapping[str, Any]) -> str:
  return " ".join(f"{k}={naming.value_text(v)}" for k, v in overrides.items()) or "(base)"


def summary_rows(record: store.SweepRecord,
                 rows: Sequence[results.ResultRow]) -> list[dict[str, Any]]:
  """One row per variant of the current sweep, in the sweep's order (summary.csv's columns)."""
  out = {v: {"variant": v, "n": sum(r.status == "done" for r in rows if r.variant == v),
             "runs": sum(r.variant == v for r in rows),
             "baseline": v == record.baseline} for v in record.variants}
  for metric in _metric_columns(rows):
    for v, cols in _compare(per_variant(rows, metric), record.baseline, metric).items():
      if v in out:
        out[v].update(cols)
  for variant, line in out.items():
    done = [r for r in rows if r.variant == variant and r.status == "done"]
    line["params"] = done[0].params if done else None
    line["macs"] = done[0].macs if done else None
    for key in ("images_per_sec", "wall_s"):
      measured = [getattr(r, key) for r in done if getattr(r, key) is not None]
      line[f"{key}_mean"] = float(np.mean(measured)) if measured else None
    line["config_diff"] = _config_diff(record.variants[variant])
  return list(out.values())


def _fmt(x, digits=4) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "–"
  if isinstance(x, float):
    return f"{x:.{digits}f}"
  return f"{x:,}" if isinstance(x, int) else str(x)


def markdown(record: store.SweepRecord, summary: Sequence[Mapping[str, Any]]) -> str:
  """summary.md: the compared metric and the loss, with the tests against the baseline."""
  metric = record.metric
  head = ["variant", "n", f"{metric} mean ± std", "95% CI", "Δ vs baseline",
          "p Welch (Holm)", "p paired (Holm)", "eval/loss mean ± std", "params", "img/s",
          "config"]
  lines = [f"Sweep of `{record.config}`, metric `{metric}`, baseline `{record.baseline}` "
           "(p-values two-sided, Holm-corrected over the variants).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for line in summary:
    col = lambda k, line=line: line.get(f"{metric}_{k}")
    loss = (f"{_fmt(line.get('eval/loss_mean'))} ± {_fmt(line.get('eval/loss_std'))}"
            if "eval/loss_mean" in line else "–")
    base = line["baseline"]
    cells = [line["variant"] + (" (baseline)" if base else ""), f"{line['n']}/{line['runs']}",
             f"{_fmt(col('mean'))} ± {_fmt(col('std'))}",
             f"[{_fmt(col('ci_low'))}, {_fmt(col('ci_high'))}]",
             "–" if base or col("diff") is None else f"{col('diff'):+.4f}",
             "–" if base else _fmt(col("p_welch_holm"), 3),
             "–" if base else _fmt(col("p_paired_holm"), 3), loss,
             _fmt(line.get("params")), _fmt(line.get("images_per_sec_mean"), 0),
             f"`{line['config_diff']}`"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def mean_curves(logs: Mapping[str, list[list[dict]]]) -> dict[str, dict[int, dict[str, float]]]:
  """Per variant, per step, the mean over the done seeds (``logs``: ``done_logs``) of every
  scalar all of them logged."""
  curves = {}
  for variant, runs in logs.items():
    by_step = [{r["step"]: r for r in rows} for rows in runs]
    steps = sorted(set.intersection(*(set(b) for b in by_step)))
    curves[variant] = {}
    for step in steps:
      keys = set.intersection(*(set(b[step]) for b in by_step)) - {"step"}
      curves[variant][step] = {k: float(np.mean([b[step][k] for b in by_step])) for k in keys}
  return curves


def done_logs(sweep_dir: str, record: store.SweepRecord) -> dict[str, list[list[dict]]]:
  """Per variant with a done trial, the metrics.jsonl rows of each of its done trials."""
  logs = {}
  for variant, trials in record.by_variant().items():
    done = [files.read_jsonl(os.path.join(t.run_dir(sweep_dir), files.METRICS)) for t in trials
            if store.is_done(t.run_dir(sweep_dir), t.config_hash)]
    if done:
      logs[variant] = done
  return logs


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


def write_all(sweep_dir: str, record: store.SweepRecord) -> list[dict[str, Any]]:
  """results.csv, summary.csv, summary.md, curves.png, final.png and the mean curves."""
  from cnnjax.sweep import plots  # pylint: disable=import-outside-toplevel  # matplotlib
  rows = results.write_results(sweep_dir, record)
  summary = summary_rows(record, rows)
  names = ["variant", "n", "runs", "baseline"] + sorted(
      {k for s in summary for k in s} - {"variant", "n", "runs", "baseline", "config_diff"}
  ) + ["config_diff"]
  results.write_csv(os.path.join(sweep_dir, "summary.csv"), summary, names)
  files.write_atomic(os.path.join(sweep_dir, "summary.md"), markdown(record, summary))
  logs = done_logs(sweep_dir, record)
  write_tensorboard(sweep_dir, mean_curves(logs))
  plots.curves(logs, record.metric, os.path.join(sweep_dir, "curves.png"))
  plots.finals(record, rows, os.path.join(sweep_dir, "final.png"))
  return summary
