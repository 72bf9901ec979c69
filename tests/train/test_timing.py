"""When the loop acts (``every``, ``steps_in_call``) and how it measures images/s (``Clock``)."""

import dataclasses

import pytest

from cnnjax import config as config_lib
from cnnjax.train import timing

# every 10 (logging), 15 (evaluation), 30 (saving); 60 steps in all; calls of up to 4 steps
STEPS = config_lib.Steps(steps_per_epoch=15.0, total_steps=60, warmup_steps=0, decay_steps=(),
                         eval_every_steps=15, log_every_steps=10, checkpoint_every_steps=30,
                         steps_per_call=4)


@pytest.mark.parametrize("step,interval,total,expected", [
    (10, 10, 60, True), (20, 10, 60, True), (15, 10, 60, False), (59, 10, 60, False),
    (60, 7, 60, True),  # the last step always
    (14, 0, 60, False), (60, 0, 60, True),  # 0: only at the end
])
def test_every(step, interval, total, expected):
  assert timing.every(step, interval, total) is expected


@pytest.mark.parametrize("step,expected", [(0, 4), (8, 2), (9, 1), (10, 2), (13, 2), (16, 4),
                                           (28, 2), (58, 2)])
def test_a_call_stops_at_every_logging_eval_and_save_step(step, expected):
  # a call stays in one group of 4 batches: 0-3, ..., 8-9 | 10-11 (log at 10), 12-14 | 15 ...
  assert timing.steps_in_call(step, STEPS) == expected
  assert timing.steps_in_call(step, dataclasses.replace(STEPS, steps_per_call=1)) == 1


def test_a_call_never_waits_for_an_interval_of_zero():
  steps = dataclasses.replace(STEPS, eval_every_steps=0, checkpoint_every_steps=100)
  assert timing.steps_in_call(58, steps) == 2  # cut by the end only
  assert timing.steps_in_call(12, steps) == 4


class FakeTime:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_the_clock_leaves_out_compilation_and_pauses():
  t = FakeTime()
  clock = timing.Clock(0, batch_size=10, now=t)
  t.now += 30.0  # the first call: compiling, not counted
  clock.start(4)
  t.now += 2.0  # steps 5..10 train in 2 s
  assert clock.lap(10) == pytest.approx(6 * 10 / 2.0)
  t.now += 1.0  # steps 11..12
  with clock.paused():  # an evaluation
    t.now += 50.0
  t.now += 1.0  # steps 13..14
  with clock.paused():  # a save
    t.now += 5.0
  assert clock.lap(14) == pytest.approx(4 * 10 / 2.0)
  t.now += 3.0
  assert clock.lap(14) is None  # no step since the last lap


def test_a_lap_at_the_first_calls_end_has_no_rate():
  t = FakeTime()
  clock = timing.Clock(0, batch_size=10, now=t)
  t.now += 30.0
  clock.start(10)
  assert clock.lap(10) is None  # logged at the first call's end: nothing measured yet
  t.now += 1.0
  assert clock.lap(20) == pytest.approx(100.0)
