"""A PNG of the training curves (loss and top-1, train and eval) from metrics.jsonl."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

from cnnjax.train.writers import read_metrics  # pylint: disable=wrong-import-position


def curves(metrics_path: str, out_path: str, title: str = "") -> None:
  rows = read_metrics(metrics_path)
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, metric in zip(axes, ("loss", "top1")):
    for split, style in (("train", "-"), ("eval", "o-")):
      key = f"{split}/{metric}"
      pts = [(r["step"], r[key]) for r in rows if key in r]
      if pts:
        ax.plot(*zip(*pts), style, label=key, markersize=3)
    ax.set_xlabel("step")
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)
