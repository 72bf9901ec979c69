"""A PNG of the training curves (loss and top-1, train and eval) from metrics.jsonl.

Drawn on a ``Figure`` with its own Agg canvas: no pyplot, and the process's matplotlib backend
is left as it was (importing this module changes nothing).
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnjax import files


def curves(metrics_path: str, out_path: str, title: str = "") -> None:
  rows = files.read_jsonl(metrics_path)
  fig = Figure(figsize=(10, 4))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2)
  for ax, metric in zip(axes, ("loss", "top1")):
    for split, style in (("train", "-"), ("eval", "o-"), ("eval_ema", "s--")):
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
