"""The sweep's two pictures: DIR/curves.png and DIR/final.png (matplotlib, Agg).

curves.png: per variant, the mean over its done seeds with a ±1 sample-std band, for the train
loss and the compared metric, against steps. final.png: each seed's final metric as a dot, with
the variant's mean and 95% t interval.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from cnnjax.sweep import results, stats, store  # pylint: disable=wrong-import-position


def _band(logs: list[list[dict]], key: str):
  """Steps every seed logged ``key`` at, and the mean and std over the seeds there."""
  series = [{r["step"]: r[key] for r in rows if key in r} for rows in logs]
  steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
  values = np.array([[s[t] for t in steps] for s in series])
  if not steps:
    return np.array([]), np.array([]), np.array([])
  std = values.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(len(steps))
  return np.array(steps), values.mean(axis=0), std


def curves(sweep_dir: str, sweep: dict, out_path: str) -> None:
  metric = sweep["metric"]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for variant, entries in store.variant_dirs(sweep).items():
    logs = [results.read_rows(os.path.join(sweep_dir, e["workdir"], "metrics.jsonl"))
            for e in entries
            if store.is_done(os.path.join(sweep_dir, e["workdir"]), e["config_hash"])]
    if not logs:
      continue
    for ax, key in zip(axes, ("train/loss", metric)):
      steps, mean, std = _band(logs, key)
      if not len(steps):
        continue
      style = "o-" if len(steps) < 3 else "-"
      (line,) = ax.plot(steps, mean, style, label=f"{variant} (n={len(logs)})", markersize=4)
      ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
  for ax, key in zip(axes, ("train/loss", metric)):
    ax.set_xlabel("step")
    ax.set_title(f"{key}: mean ± std over seeds")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  axes[0].set_yscale("log")
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)


def finals(sweep: dict, rows: list[dict], out_path: str) -> None:
  metric = sweep["metric"]
  variants = list(sweep["variants"])
  fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(variants) + 2), 4))
  for i, v in enumerate(variants):
    values = [r[metric] for r in rows if r["variant"] == v and r["status"] == "done"
              and r.get(metric) is not None]
    if not values:
      continue
    jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
    ax.plot(i + np.asarray(jitter), values, "o", color="tab:blue", alpha=0.6, markersize=5)
    d = stats.describe(values)
    if d.n > 1:
      ax.errorbar(i + 0.3, d.mean, yerr=[[d.mean - d.ci_low], [d.ci_high - d.mean]], fmt="s",
                  color="black", capsize=4, markersize=5)
    else:
      ax.plot(i + 0.3, d.mean, "s", color="black", markersize=5)
  ax.set_xticks(range(len(variants)))
  ax.set_xticklabels(variants, rotation=20, ha="right", fontsize=8)
  ax.set_ylabel(metric)
  ax.set_title(f"final {metric}: seeds (dots), mean and 95% CI (squares)")
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)
