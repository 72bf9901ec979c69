"""The loop's two small jobs about time: whether a step is one to act on, and images/s.

``every`` is the one test of "is it time" (log, evaluate, save); ``steps_in_call`` cuts the
compiled calls so that each of those steps ends a call. ``Clock`` measures the training rate over
a logging window, leaving out the first call's compilation and the pauses for evaluation and
saving (as big_vision's ``u.itstime`` and ``u.chrono`` do for theirs).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from cnnjax.config import Steps


def every(step: int, interval: int, total: int) -> bool:
  """Whether ``step`` is a multiple of ``interval`` (0: never) or the last step, ``total``."""
  return step == total or bool(interval and step % interval == 0)


def steps_in_call(step: int, steps: Steps) -> int:
  """How many steps the call starting after ``step`` takes: up to the next multiple of
  ``steps_per_call`` (so a call stays in one group of batches), cut at the next step where
  ``every`` logs, evaluates or saves, and at the end."""
  intervals = (steps.steps_per_call, steps.log_every_steps, steps.eval_every_steps,
               steps.checkpoint_every_steps)
  return min([steps.total_steps] + [(step // e + 1) * e for e in intervals if e]) - step


class Clock:
  """Images per second over the window since the last ``lap``, without the paused time.

  ``start(step)`` marks where measuring begins (after the first call has compiled and run);
  ``paused()`` brackets what isn't training (evaluation, saving); ``lap(step)`` returns the rate
  since the previous mark and marks again."""

  def __init__(self, step: int, batch_size: int, now: Callable[[], float] = time.monotonic):
    self._now = now
    self._batch_size = batch_size
    self.start(step)

  def start(self, step: int) -> None:
    self._time, self._step, self._paused = self._now(), step, 0.0

  def lap(self, step: int) -> float | None:
    """Images/s from the mark to ``step`` (None when no step was measured), and a new mark."""
    now = self._now()
    rate = None
    if step > self._step:
      rate = (step - self._step) * self._batch_size / max(now - self._time - self._paused, 1e-9)
    self._time, self._step, self._paused = now, step, 0.0
    return rate

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    begin = self._now()
    try:
      yield
    finally:
      self._paused += self._now() - begin
