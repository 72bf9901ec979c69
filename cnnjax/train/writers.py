"""Where metrics go: WORKDIR/metrics.jsonl, TensorBoard event files, and the terminal.

On a terminal a progress bar shows loss, images/s and ETA; otherwise (logs, CI) a plain line is
printed at each logging step. Only process 0 writes.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
import time

from tensorboardX import SummaryWriter
from tqdm import tqdm

from cnnjax import files


def truncate_after(path: str, step: int) -> None:
  """Drops lines logged after ``step`` (a resumed run logs those steps again), and torn ones."""
  if not os.path.exists(path):
    return
  kept = [row for row in files.read_jsonl(path) if row.get("step", step + 1) <= step]
  files.write_atomic(path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in kept))


def json_line(step: int, scalars: dict[str, float]) -> str:
  """One strict-JSON metrics line; a non-finite value raises rather than write ``NaN``.

  The loop stops a diverged run before it logs, so this is a guard: ``NaN``/``Infinity`` are not
  JSON, and a line with them would break every strict reader of metrics.jsonl.
  """
  for k, v in scalars.items():
    if isinstance(v, numbers.Real) and not math.isfinite(v):
      raise ValueError(f"metric {k} is {v} at step {step}; metrics.jsonl takes finite values only.")
  return json.dumps({"step": step, **scalars}, allow_nan=False)


class MetricWriter:
  """Writes scalar metrics per step to JSON lines and TensorBoard, and reports progress.

  On a terminal the bar's text is the newest ``train/`` line's loss and images/s (kept while the
  bar moves between log lines; tqdm adds the step and the ETA), and every other line (evaluation)
  is printed above the bar as it comes; otherwise each line is printed as it comes. ``quiet``
  keeps the terminal silent (a notebook reads metrics.jsonl instead); the files are written
  all the same."""

  def __init__(self, workdir: str, *, total_steps: int, start_step: int, enabled: bool = True,
               stream=None, quiet: bool = False):
    self.enabled = enabled
    self.path = os.path.join(workdir, files.METRICS)
    self.total_steps = total_steps
    self.stream = None if quiet else stream or sys.stderr
    self.bar = None
    self.tb = None
    self._start = (time.monotonic(), start_step)
    if not enabled:
      return
    truncate_after(self.path, start_step)
    self.jsonl = open(self.path, "a")  # pylint: disable=consider-using-with
    self.tb = SummaryWriter(logdir=workdir, purge_step=start_step + 1 if start_step else None)
    if self.stream is not None and self.stream.isatty():
      self.bar = tqdm(total=total_steps, initial=start_step, unit="step", file=self.stream,
                      dynamic_ncols=True)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    """Logs ``scalars`` at ``step`` everywhere."""
    if not self.enabled:
      return
    self.jsonl.write(json_line(step, scalars) + "\n")
    self.jsonl.flush()
    for k, v in scalars.items():
      self.tb.add_scalar(k, v, step)
    self.tb.flush()
    shown = ", ".join(f"{k}={v:.4g}" for k, v in scalars.items())
    if self.bar is None:
      if self.stream is not None:  # not quiet
        print(f"step {step}/{self.total_steps} {self._eta(step)} {shown}", file=self.stream,
              flush=True)
    elif "train/loss" in scalars:
      self.progress(step)
      rate = scalars.get("train/images_per_sec")
      self.bar.set_postfix_str(f"loss={scalars['train/loss']:.4g}"
                               + (f", img/s={rate:,.0f}" if rate is not None else ""))
    else:
      self.bar.write(f"step {step}/{self.total_steps} {shown}", file=self.stream)

  def progress(self, step: int) -> None:
    """Moves the progress bar to ``step`` (no-op without a terminal); its text stays."""
    if self.bar is not None and step != self.bar.n:
      self.bar.update(step - self.bar.n)

  def _eta(self, step: int) -> str:
    t0, s0 = self._start
    done = step - s0
    if done <= 0:
      return "eta ?"
    left = (time.monotonic() - t0) / done * (self.total_steps - step)
    return f"eta {int(left // 60)}m{int(left % 60):02d}s"

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
    if self.tb is not None:
      self.tb.close()
      self.jsonl.close()
