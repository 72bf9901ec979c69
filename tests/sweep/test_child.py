"""A trial's child process and the result it leaves: the result of an exit code by hand, the
claim that keeps a second process out, and (e2e) a real child that fails."""

import os
import sys

import pytest

from cnnjax.sweep import child as child_lib, env, runner, store


def _trial(argv=()):
  return store.Trial("v", 0, {}, "h", store.trial_dir("v", 0), tuple(argv))


def test_the_result_of_an_exit_code():
  done = child_lib.ended_result("h", 0, 2, 5.0, previous=None, error=None)
  assert (done.status, done.exit_code, done.attempt, done.wall_s, done.partial_wall_s) == (
      "done", 0, 2, 5.0, None)
  stopped = child_lib.ended_result("h", 143, 1, 4.0, previous=None, error="stopped by SIGTERM")
  assert (stopped.status, stopped.partial_wall_s, stopped.wall_s) == ("stopped", 4.0, None)
  assert child_lib.ended_result("h", -15, 1, 1.0, None, "x").status == "stopped"
  assert child_lib.ended_result("h", 3, 1, 1.0, None, "error: diverged").error == "error: diverged"
  # A resumed run's time adds every earlier attempt of the same config, and only those.
  assert child_lib.ended_result("h", 0, 2, 5.0, previous=stopped, error=None).wall_s == 9.0
  assert child_lib.ended_result("other", 0, 2, 5.0, previous=stopped, error=None).wall_s == 5.0


def test_a_trial_claimed_elsewhere_starts_nothing(tmp_path):
  trial = _trial([sys.executable, "-c", "raise SystemExit(1)"])
  with store.claim(trial.run_dir(str(tmp_path))):
    child = child_lib.Child(trial, str(tmp_path), env.Slot({}, None, "test"))
    assert not child.claimed and child.proc is None and child.poll() is None
  assert not (tmp_path / "v" / "seed=0" / store.LOG).exists()


def test_seed_major_order():
  trials = [store.Trial(v, s, {}, "h", store.trial_dir(v, s)) for v in "ab" for s in (0, 1, 2)]
  assert [(t.variant, t.seed) for t in runner.seed_major(trials)] == [
      ("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]


@pytest.mark.e2e
def test_a_failing_child_leaves_its_result_and_frees_its_claim(tmp_path):
  trial = _trial([sys.executable, "-c", "print('step 1'); print('error: boom'); exit(3)"])
  child = child_lib.Child(trial, str(tmp_path), env.Slot({}, None, "test"), attempt=2)
  run_dir = trial.run_dir(str(tmp_path))
  assert child.claimed and store.is_claimed(run_dir)
  assert child.wait() == 3
  result = store.read_result(run_dir)
  assert (result.status, result.exit_code, result.attempt, result.error) == (
      "failed", 3, 2, "error: boom")
  assert not store.is_claimed(run_dir)
  ended = os.stat(os.path.join(run_dir, store.RESULT)).st_mtime_ns
  assert child.poll() == 3 and os.stat(os.path.join(run_dir, store.RESULT)).st_mtime_ns == ended
  log = open(os.path.join(run_dir, store.LOG)).read()
  assert log.startswith("=== attempt 2 on test, ") and "step 1" in log
