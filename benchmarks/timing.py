"""Step timing shared by the JAX and PyTorch sides (no framework imports)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def timed_steps(run: Callable[[], object], min_time: float, min_steps: int,
                max_steps: int) -> list[float]:
  """Wall time of each call of ``run`` (which must wait for its result) until both minimums
  are met, or ``max_steps``."""
  times: list[float] = []
  start = time.perf_counter()
  while len(times) < max_steps and (len(times) < min_steps
                                    or time.perf_counter() - start < min_time):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
  return times


def summarize(times: list[float], batch: int) -> dict[str, float]:
  t = np.asarray(times)
  median = float(np.median(t))
  return {"steps": len(t), "step_ms_median": 1e3 * median,
          "step_ms_p10": 1e3 * float(np.percentile(t, 10)),
          "step_ms_p90": 1e3 * float(np.percentile(t, 90)),
          "images_per_s": batch / median}
