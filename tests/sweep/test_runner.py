"""The local runner in-process, with children that are one-line Python commands (no training):
a child stopped by a scheduler's signal is resumed without using up a retry, a run whose
run.lock a live process holds is waited on (never started, never failed), and SIGHUP stops the
sweep as SIGTERM does."""

import io
import os
import signal
import sys
import threading
import time

from cnnjax import files
from cnnjax.sweep import child, env, results, runner, store

SLOT = env.Slot({}, None, "test")


def record_of(tmp_path, *scripts):
  """A sweep whose trial ``i`` runs ``python -c scripts[i]`` in its run directory."""
  def argv(i, script):
    run_dir = str(tmp_path / f"v={i}" / "seed=0")
    return (sys.executable, "-c", f"import os, sys; os.chdir({run_dir!r}); {script}")

  trials = tuple(store.Trial(f"v={i}", 0, {"v": i}, f"{i:016d}", f"v={i}/seed=0", argv(i, s))
                 for i, s in enumerate(scripts))
  variants = {t.variant: {"v": i} for i, t in enumerate(trials)}
  return store.SweepRecord(trials=trials, variants=variants,
                           metric="eval/top1", baseline="v=0", base_hash="b" * 16, config="x.py")


def run(tmp_path, record, **kwargs):
  stream = io.StringIO()
  code = runner.run(str(tmp_path), record, [SLOT], stream=stream, warm=False, **kwargs)
  return code, stream.getvalue()


# Exits 128 + USR2 (saved, as launch.py does on Slurm's warning) the first time, then 0.
STOP_ONCE = ("first = not os.path.exists('ran'); open('ran', 'a').close(); "
             "sys.exit(128 + 12 if first else 0)")


def test_a_child_stopped_by_a_signal_is_stopped_not_failed():
  for code in (143, 130, 129, 138, 140, -12, -1):
    result = child.ended_result("h", code, 1, 1.0, None, None)
    assert result.status == "stopped", code
  assert child.ended_result("h", 3, 1, 1.0, None, None).status == "failed"
  assert child.ended_result("h", -9, 1, 1.0, None, None).status == "failed"


def test_a_stopped_child_resumes_without_using_a_retry(tmp_path):
  record = record_of(tmp_path, STOP_ONCE)
  code, out = run(tmp_path, record, retries=0)
  assert code == 0, out
  run_dir = record.trials[0].run_dir(str(tmp_path))
  assert store.read_result(run_dir).status == "done"
  assert open(os.path.join(run_dir, store.LOG)).read().count("=== attempt") == 2


def test_a_run_whose_lock_is_held_elsewhere_is_waited_on_then_started(tmp_path):
  record = record_of(tmp_path, "sys.exit(0)")
  run_dir = record.trials[0].run_dir(str(tmp_path))
  os.makedirs(run_dir)
  held, release = threading.Event(), threading.Event()

  def orphan():  # another open file: flock treats it as another process's lock
    with files.exclusive_lock(os.path.join(run_dir, files.RUN_LOCK)):
      held.set()
      release.wait()

  thread = threading.Thread(target=orphan)
  thread.start()
  held.wait()
  try:
    assert results.status(run_dir, None, record.trials[0].config_hash) == "running elsewhere"
    threading.Timer(1.5, release.set).start()
    start = time.time()
    code, out = run(tmp_path, record, retries=0)
  finally:
    release.set()
    thread.join()
  assert code == 0, out
  assert time.time() - start >= 1.4  # waited for the lock
  assert "1 running elsewhere (waited on)" in out
  assert open(os.path.join(run_dir, store.LOG)).read().count("=== attempt") == 1
  assert store.read_result(run_dir).status == "done"


def test_sighup_stops_the_sweep_and_its_children_save(tmp_path):
  # The child exits 143 on SIGTERM (as launch.py does: saved); it runs until then.
  script = ("import signal, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(143)); "
            "open('started', 'w').close(); time.sleep(60)")
  record = record_of(tmp_path, script)
  run_dir = record.trials[0].run_dir(str(tmp_path))

  def hang_up():
    while not os.path.exists(os.path.join(run_dir, "started")):
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGHUP)

  threading.Thread(target=hang_up, daemon=True).start()
  previous = signal.getsignal(signal.SIGHUP)
  code, out = run(tmp_path, record)
  assert signal.getsignal(signal.SIGHUP) == previous  # restored
  assert code == 128 + signal.SIGHUP, out
  assert store.read_result(run_dir).status == "stopped"
  assert "run the same command again" in out


def test_status_says_how_a_stopped_run_ended():
  from cnnjax.sweep import __main__ as sweep_main  # pylint: disable=import-outside-toplevel
  assert sweep_main._stopped(140) == "exit 140: saved on SIGUSR2, resumes"
  assert sweep_main._stopped(-12) == ("exit -12: killed by SIGUSR2, resumes from its last "
                                      "checkpoint")
