"""The sweep's two pictures: DIR/curves.png and DIR/final.png (matplotlib's object API on an Agg
canvas: importing this module sets no backend).

curves.png: per variant, the mean over its done seeds with a ±1 sample-std band, for the train
loss and the compared metric, against steps. final.png: each seed's final metric as a dot, with
the variant's mean and 95% t interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnjax import files
from cnnjax.sweep import results, stats, store


def _save(figure: Figure, out_path: str) -> None:
  """PNG through Agg, atomically: no global backend or pyplot state is touched."""
  FigureCanvasAgg(figure)
  figure.tight_layout()
  with files.atomic_path(out_path) as tmp:
    figure.savefig(tmp, dpi=100, format="png")


def _band(logs: list[list[dict]], key: str):
  """Steps every seed logged ``key`` at, and the mean and std over the seeds there."""
  series = [{r["step"]: r[key] for r in rows if key in r} for rows in logs]
  steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
  values = np.array([[s[t] for t in steps] for s in series])
  if not steps:
    return np.array([]), np.array([]), np.array([])
  std = values.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(len(steps))
  return np.array(steps), values.mean(axis=0), std


def curves(logs: Mapping[str, list[list[dict]]], metric: str, out_path: str) -> None:
  """``logs``: per variant, the metrics.jsonl rows of each done seed (``report.done_logs``)."""
  figure = Figure(figsize=(11, 4))
  axes = figure.subplots(1, 2)
  for variant, runs in logs.items():
    for ax, key in zip(axes, ("train/loss", metric)):
      steps, mean, std = _band(runs, key)
      if not len(steps):
        continue
      style = "o-" if len(steps) < 3 else "-"
      (line,) = ax.plot(steps, mean, style, label=f"{variant} (n={len(runs)})", markersize=4)
      ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
  for ax, key in zip(axes, ("train/loss", metric)):
    ax.set_xlabel("step")
    ax.set_title(f"{key}: mean ± std over seeds")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  axes[0].set_yscale("log")
  _save(figure, out_path)


def finals(record: store.SweepRecord, rows: Sequence[results.ResultRow], out_path: str) -> None:
  metric = record.metric
  variants = list(record.variants)
  figure = Figure(figsize=(max(4, 1.3 * len(variants) + 2), 4))
  ax = figure.subplots()
  for i, variant in enumerate(variants):
    values = [r.finals[metric] for r in rows if r.variant == variant and r.status == "done"
              and r.finals.get(metric) is not None]
    if not values:
      continue
    jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
    ax.plot(i + np.asarray(jitter), values, "o", color="tab:blue", alpha=0.6, markersize=5)
    summary = stats.summarize_values(values)
    if summary.n > 1:
      ax.errorbar(i + 0.3, summary.mean, fmt="s", color="black", capsize=4, markersize=5,
                  yerr=[[summary.mean - summary.ci_low], [summary.ci_high - summary.mean]])
    else:
      ax.plot(i + 0.3, summary.mean, "s", color="black", markersize=5)
  ax.set_xticks(range(len(variants)))
  ax.set_xticklabels(variants, rotation=20, ha="right", fontsize=8)
  ax.set_ylabel(metric)
  ax.set_title(f"final {metric}: seeds (dots), mean and 95% CI (squares)")
  ax.grid(alpha=0.3, axis="y")
  _save(figure, out_path)
