"""The sweep directory's files and their typed records, in-process: sweep.json and result.json
read and written in the format older sweeps wrote, done or not, claims, the error of a log."""

import json
import os
import subprocess
import sys

import pytest

from cnnjax.sweep import spec, store

# sweep.json exactly as the sweep wrote it before its records were typed.
OLD_SWEEP = {
    "command": ["launch.py", "--config=tiny.py", "--sweep"], "cwd": "/home/me/cnnjax",
    "config": "tiny.py", "cli_overrides": ["--config.num_steps=40"], "base_hash": "b" * 16,
    "metric": "eval/top1", "baseline": "activation=relu",
    "variants": {"activation=relu": {"model_options.activation": "relu"},
                 "activation=gelu": {"model_options.activation": "gelu"}},
    "commit": "abc123", "versions": {"python": "3.11.9", "jax": "0.10.2"}, "host": "node1",
    "written": "2026-12-01T10:00:00+0000",
    "runs": [{"variant": "activation=relu", "seed": 0, "workdir": "activation=relu/seed=0",
              "config_hash": "1" * 16, "overrides": {"model_options.activation": "relu"},
              "argv": ["python", "launch.py", "--config.seed=0"]},
             {"variant": "activation=gelu", "seed": 0, "workdir": "activation=gelu/seed=0",
              "config_hash": "2" * 16, "overrides": {"model_options.activation": "gelu"},
              "argv": ["python", "launch.py", "--config.seed=0"]}],
    "removed": ["activation=elu/seed=0"]}


def test_an_old_sweep_json_reads_into_records_and_writes_back_the_same(tmp_path):
  (tmp_path / store.SWEEP_FILE).write_text(json.dumps(OLD_SWEEP, indent=1))
  record = store.read_sweep(str(tmp_path))
  assert record.metric == "eval/top1" and record.baseline == "activation=relu"
  assert record.removed == ("activation=elu/seed=0",) and record.cwd == "/home/me/cnnjax"
  relu = record.trials[0]
  assert (relu.variant, relu.seed, relu.config_hash) == ("activation=relu", 0, "1" * 16)
  assert relu.argv == ("python", "launch.py", "--config.seed=0")
  assert relu.run_dir("/s") == "/s/activation=relu/seed=0"
  assert list(record.by_variant()) == ["activation=relu", "activation=gelu"]
  assert record.to_json() == OLD_SWEEP
  assert list(record.to_json()) == list(OLD_SWEEP)  # the same keys in the same order


def test_a_sweep_json_without_the_later_keys_still_reads(tmp_path):
  oldest = {k: v for k, v in OLD_SWEEP.items() if k not in ("removed", "cwd", "versions")}
  oldest["runs"] = [{k: v for k, v in r.items() if k not in ("workdir", "argv")}
                    for r in OLD_SWEEP["runs"]]
  (tmp_path / store.SWEEP_FILE).write_text(json.dumps(oldest))
  record = store.read_sweep(str(tmp_path))
  assert record.removed == () and record.cwd is None
  assert [t.workdir for t in record.trials] == ["activation=relu/seed=0", "activation=gelu/seed=0"]
  assert store.read_sweep(str(tmp_path / "nothing")) is None


def test_write_sweep_adds_each_trials_command_and_round_trips(tmp_path):
  trial = store.Trial("lr=0.1", 3, {"optimizer.learning_rate": 0.1, "model_options.pool": "avg"},
                      "c" * 16, store.trial_dir("lr=0.1", 3))
  plan = spec.SweepPlan((trial,), {"lr=0.1": dict(trial.overrides)}, "eval/top1", "lr=0.1", "h")
  sweep_dir = str(tmp_path / "sweep")
  record = store.write_sweep(sweep_dir, plan, launch="launch.py", config_spec="exp.py:arg",
                             cli_overrides=["--config.num_steps=5"], command=["launch.py", "x"])
  assert record.trials[0].argv[1:] == (
      os.path.abspath("launch.py"), f"--config={os.path.abspath('exp.py')}:arg",
      "--config.num_steps=5", "--config.seed=3", "--config.optimizer.learning_rate=0.1",
      "--config.model_options.pool=avg", f"--workdir={sweep_dir}/lr=0.1/seed=3")
  assert store.read_sweep(sweep_dir) == record
  on_disk = json.loads((tmp_path / "sweep" / store.SWEEP_FILE).read_text())
  assert list(on_disk) == list(OLD_SWEEP) and list(on_disk["runs"][0]) == list(
      OLD_SWEEP["runs"][0])


def test_result_json_round_trip_in_the_old_format(tmp_path):
  done = {"status": "done", "config_hash": "h1", "exit_code": 0, "attempt": 2,
          "ended": "2026-12-01T10:00:00+0000", "wall_s": 12.5}
  failed = {"status": "failed", "config_hash": "h1", "exit_code": 3, "attempt": 1,
            "ended": "2026-12-01T10:00:00+0000", "error": "error: diverged", "partial_wall_s": 4.0}
  for value in (done, failed):
    (tmp_path / store.RESULT).write_text(json.dumps(value))
    result = store.read_result(str(tmp_path))
    assert result.to_json() == value
    store.write_result(str(tmp_path), result)
    assert json.loads((tmp_path / store.RESULT).read_text()) == value
  assert store.read_result(str(tmp_path)).error == "error: diverged"
  (tmp_path / store.RESULT).write_text('{"status": "do')  # torn: as if none
  assert store.read_result(str(tmp_path)) is None
  assert store.read_result(str(tmp_path / "missing")) is None


def test_is_done_needs_done_and_the_current_config(tmp_path):
  run_dir = str(tmp_path)
  assert not store.is_done(run_dir, "h1")
  store.write_result(run_dir, store.TrialResult("done", "h1", 0, 1))
  assert store.is_done(run_dir, "h1") and not store.is_done(run_dir, "h2")
  store.write_result(run_dir, store.TrialResult("failed", "h1", 3, 1, error="error: x"))
  assert not store.is_done(run_dir, "h1")


def test_a_claim_is_held_once_and_freed_with_its_block(tmp_path):
  run_dir = str(tmp_path / "run")
  assert not store.is_claimed(run_dir)
  with store.claim(run_dir) as first:
    assert first and store.is_claimed(run_dir)
    assert f"pid {os.getpid()}" in (tmp_path / "run" / store.CLAIM).read_text()
    with store.claim(run_dir) as second:
      assert not second
    assert store.is_claimed(run_dir)  # the refused attempt did not free it
  assert not store.is_claimed(run_dir)
  with store.claim(run_dir) as again:
    assert again


def test_last_error_is_the_last_error_line_else_the_last_line(tmp_path):
  assert store.last_error(str(tmp_path)) == ""
  log = tmp_path / store.LOG
  log.write_text("=== attempt 1\nerror: first\nstep 10\nerror: training diverged\nbye\n\n")
  assert store.last_error(str(tmp_path)) == "error: training diverged"
  log.write_text("=== attempt 1\nKilled\n\n")
  assert store.last_error(str(tmp_path)) == "Killed"
  log.write_text("error: " + "x" * 400 + "\n")
  assert len(store.last_error(str(tmp_path))) == 300


def test_a_damaged_sweep_json_is_one_line_naming_the_file_and_how(tmp_path):
  path = tmp_path / store.SWEEP_FILE
  for text, how in (("", "damaged: empty"), ('{"runs": [', "damaged: not JSON (Expecting value"),
                    ('{"runs": []}', "damaged: no 'variants' key"), ("[1]", "not a sweep record")):
    path.write_text(text)
    try:
      store.read_sweep(str(tmp_path))
    except store.Damaged as e:
      assert str(e).startswith(f"{path} is ") and how in str(e) and "\n" not in str(e), str(e)
    else:
      raise AssertionError(text)


def _tiny_plan():
  from cnnjax import config as config_lib  # pylint: disable=import-outside-toplevel
  from experiments import lenet_mnist  # pylint: disable=import-outside-toplevel,unused-import
  return spec.expand(spec.load("tests/sweep/tiny_sweep.py"),
                     config_lib.load("tests/sweep/tiny_sweep.py"))


def test_the_sweep_command_rebuilds_a_damaged_sweep_json_when_the_runs_agree(tmp_path, capsys):
  plan, sweep_dir = _tiny_plan(), str(tmp_path)
  write = lambda: store.write_sweep(sweep_dir, plan, launch="launch.py",  # noqa: E731
                                    config_spec="tests/sweep/tiny_sweep.py", cli_overrides=[],
                                    command=["launch.py"])
  write()
  done, started = plan.trials[0], plan.trials[1]
  os.makedirs(done.run_dir(sweep_dir))
  store.write_result(done.run_dir(sweep_dir), store.TrialResult("done", done.config_hash))
  os.makedirs(started.run_dir(sweep_dir))
  with open(os.path.join(started.run_dir(sweep_dir), "config.json"), "w") as f:
    json.dump({"seed": started.seed, "model_options": {"activation": "relu"}}, f)
  (tmp_path / store.SWEEP_FILE).write_text('{"runs": [')  # torn
  record = write()
  assert record.trials == store.read_sweep(sweep_dir).trials
  assert (tmp_path / "sweep.json.damaged").read_text() == '{"runs": ['
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "is damaged: not JSON" in err and "rebuilt it from" in err
  assert store.is_done(done.run_dir(sweep_dir), done.config_hash)  # nothing in a run deleted
  # A run of another config: not rebuilt, one line.
  store.write_result(done.run_dir(sweep_dir), store.TrialResult("done", "0" * 16))
  (tmp_path / store.SWEEP_FILE).write_text("")
  try:
    write()
  except store.Damaged as e:
    assert "can't be rebuilt: activation=relu/seed=0 has another config hash" in str(e)
  else:
    raise AssertionError("rebuilt over a run of another config")
  assert (tmp_path / store.SWEEP_FILE).read_text() == ""


@pytest.mark.e2e
@pytest.mark.parametrize("command", ["status", "report"])
def test_status_and_report_of_a_damaged_sweep_json_are_one_error_line(tmp_path, command):
  (tmp_path / store.SWEEP_FILE).write_text('{"runs": [')
  done = subprocess.run([sys.executable, "-m", "cnnjax.sweep", command, str(tmp_path)],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 2 and done.stdout == "", done.stderr
  assert done.stderr == f"error: {tmp_path / store.SWEEP_FILE} is damaged: not JSON (Expecting " \
                        "value: line 1 column 11 (char 10))\n"
