"""launch.py --sweep as a user runs it: two local workers, the files it writes, rerun, stop and
resume, a failing run retried, dry runs and bad input. One tiny sweep (2 variants × 2 seeds of
a 40-step LeNet-5) is shared by most assertions."""

import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_launch import ROOT, launch

TINY = "--config=tests/sweep/tiny_sweep.py"
pytestmark = pytest.mark.e2e  # every test runs launch.py or python -m cnnjax.sweep

RUNS = ["activation=relu/seed=0", "activation=relu/seed=1", "activation=gelu/seed=0",
        "activation=gelu/seed=1"]


def sweep_args(workdir, data_dir, *extra, config=TINY):
  return (config, f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", "--sweep",
          "--sweep_workers=2", *extra)


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def attempts(run_dir):
  with open(os.path.join(run_dir, "log.txt")) as f:
    return sum(line.startswith("=== attempt") for line in f)


def metrics(path):
  return [k for k in read_csv(path)[0] if "/" in k and not k.endswith("images_per_sec_mean")]


@pytest.fixture(scope="module")
def swept(tmp_path_factory, data_dir):
  """The tiny sweep, run once per test session: with pytest-xdist the workers share it (the
  first to take the lock runs it), as a module fixture would run it once per worker."""
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = shared.parent  # this session's directory, above every worker's own
  workdir = shared / "tiny_sweep"
  with open(shared / "tiny_sweep.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (shared / "tiny_sweep.json").exists():
      done = launch(*sweep_args(workdir, data_dir))
      assert done.returncode == 0, done.stderr[-3000:]
      (shared / "tiny_sweep.json").write_text(json.dumps({"stderr": done.stderr,
                                                          "data_dir": data_dir}))
  ran = json.loads((shared / "tiny_sweep.json").read_text())
  return workdir, ran["stderr"], ran["data_dir"]


def test_writes_every_file(swept):
  workdir, stderr, _ = swept
  for name in ("sweep.json", "results.csv", "summary.csv", "summary.md", "curves.png",
               "final.png"):
    assert (workdir / name).stat().st_size > 0, name
  for run in RUNS:
    for name in ("metrics.jsonl", "config.json", "log.txt", "result.json", "checkpoints"):
      assert (workdir / run / name).exists(), (run, name)
  for variant in ("activation=relu", "activation=gelu"):  # TensorBoard's mean curve
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / variant / "mean"))
  assert "sweep: 4/4 done" in stderr
  sweep = json.loads((workdir / "sweep.json").read_text())
  assert sweep["commit"] and sweep["versions"]["jax"] and sweep["command"][0].endswith("launch.py")
  assert [r["workdir"] for r in sweep["runs"]] == RUNS


def test_each_child_gets_the_single_run_command_and_its_own_core(swept):
  workdir = swept[0]
  config = json.loads((workdir / RUNS[3] / "config.json").read_text())
  assert config["seed"] == 1 and config["model_options"]["activation"] == "gelu"
  assert config["num_steps"] == 40
  headers = [(workdir / r / "log.txt").read_text().splitlines()[0] for r in RUNS]
  assert {h.split(" on ")[1].split(",")[0] for h in headers} == {"cpu 0", "cpu 1"}
  assert all("--config.seed=" in h and "--workdir=" in h for h in headers)


def test_results_and_summary_follow_from_the_runs_metrics(swept):
  workdir = swept[0]
  rows = read_csv(workdir / "results.csv")
  assert [r["workdir"] for r in rows] == RUNS and {r["status"] for r in rows} == {"done"}
  assert all(int(r["params"]) == 61_706 and int(r["macs"]) > 0 for r in rows)
  finals = {}
  for run in RUNS:
    lines = [json.loads(l) for l in open(workdir / run / "metrics.jsonl")]
    final = [l for l in lines if "eval/top1" in l][-1]
    assert final["step"] == 40
    finals.setdefault(run.split("/")[0], []).append(final["eval/top1"])
    row = next(r for r in rows if r["workdir"] == run)
    assert float(row["eval/top1"]) == final["eval/top1"]
  summary = {r["variant"]: r for r in read_csv(workdir / "summary.csv")}
  for variant, values in finals.items():
    assert float(summary[variant]["eval/top1_mean"]) == pytest.approx(np.mean(values))
    assert float(summary[variant]["eval/top1_std"]) == pytest.approx(np.std(values, ddof=1))
    assert summary[variant]["n"] == "2"
  gelu = summary["activation=gelu"]
  assert float(gelu["eval/top1_diff"]) == pytest.approx(
      np.mean(finals["activation=gelu"]) - np.mean(finals["activation=relu"]))
  assert "activation=gelu" in (workdir / "summary.md").read_text()


def copy_of(swept, tmp_path):
  """A copy of the shared sweep, for the tests that write into it."""
  copy = tmp_path / "copy"
  shutil.copytree(swept[0], copy)
  return copy


def test_status_and_report_rebuild_everything_from_the_files(swept, tmp_path):
  workdir = copy_of(swept, tmp_path)
  before = (workdir / "summary.csv").read_text()
  (workdir / "summary.csv").unlink()
  env = {**os.environ, "PYTHONPATH": ROOT}
  report = subprocess.run([sys.executable, "-m", "cnnjax.sweep", "report", str(workdir)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
  assert report.returncode == 0, report.stderr[-2000:]
  assert (workdir / "summary.csv").read_text() == before
  assert "| activation=relu (baseline) | 2/2 |" in report.stdout
  status = subprocess.run([sys.executable, "-m", "cnnjax.sweep", "status", str(workdir)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
  assert status.returncode == 0 and "4 done of 4 runs" in status.stdout
  bad = subprocess.run([sys.executable, "-m", "cnnjax.sweep", "report", str(tmp_path)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "sweep.json" in bad.stderr


def test_a_rerun_skips_finished_runs_and_a_dry_run_starts_nothing(swept, tmp_path):
  workdir, data_dir = copy_of(swept, tmp_path), swept[2]
  again = launch(*sweep_args(workdir, data_dir))
  assert again.returncode == 0, again.stderr[-2000:]
  assert all(attempts(workdir / r) == 1 for r in RUNS)
  dry = launch(*sweep_args(workdir, data_dir, "--sweep_dry_run", config=TINY + ":more"))
  assert dry.returncode == 0, dry.stderr[-2000:]
  lines = dry.stdout.splitlines()
  assert lines[0].split() == ["variant", "seed", "overrides", "workdir", "state"]
  assert sum(l.endswith("done") for l in lines) == 4
  assert sum("activation=elu" in l and l.endswith("to run") for l in lines) == 2
  assert "6 runs; nothing started" in dry.stdout
  assert not (workdir / "activation=elu").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_stopped_by_a_signal_then_rerun_ends_as_an_unbroken_sweep(swept, tmp_path, data_dir,
                                                                  signum):
  """SIGHUP is a closed terminal: the children save as on SIGTERM, none fails, no retry used."""
  workdir = tmp_path / "stopped"
  proc = launch(*sweep_args(workdir, data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True)
  deadline = time.time() + 300
  while time.time() < deadline and not any(
      (workdir / r / "result.json").exists() for r in RUNS):
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    time.sleep(0.1)
  proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 128 + signum, stderr[-2000:]
  assert "run the same command again" in stderr
  ended = {r: json.loads((workdir / r / "result.json").read_text())["status"] for r in RUNS
           if (workdir / r / "result.json").exists()}
  assert set(ended.values()) <= {"done", "stopped"}, ended
  finished = [r for r, status in ended.items() if status == "done"]
  assert 0 < len(finished) < len(RUNS)
  rerun = launch(*sweep_args(workdir, data_dir, "--sweep_retries=0"))
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert all(attempts(workdir / r) == 1 for r in finished)  # not run again
  assert {r["status"] for r in read_csv(workdir / "results.csv")} == {"done"}
  unbroken = read_csv(swept[0] / "summary.csv")
  resumed = read_csv(workdir / "summary.csv")
  keys = [k for k in metrics(swept[0] / "summary.csv") if k.startswith(("eval/", "train/"))]
  assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in unbroken]


def test_a_failing_run_is_retried_and_reported(tmp_path, data_dir):
  workdir = tmp_path / "fail"
  done = launch(*sweep_args(workdir, data_dir, "--sweep_retries=1", config=TINY + ":fail"))
  assert done.returncode == 3, done.stderr[-2000:]
  run = workdir / "learning_rate=1e+09" / "seed=0"
  assert attempts(run) == 2
  assert "failed: learning_rate=1e+09/seed=0 (exit 3: error: training diverged" in done.stderr
  row = read_csv(workdir / "results.csv")[0]
  assert row["status"] == "failed" and row["exit_code"] == "3"
  assert row["error"].startswith("error: training diverged")
  assert "Traceback" not in done.stderr


BAD = [
    ((TINY + ":typo",), r"sweep key 'model_options.activaton' is not in the config. Did you mean "
                        r"'model_options.activation'\?"),
    ((TINY + ":badvalue",), r"sweep point 'dropout=1.5': config.model_options.dropout"),
    (("--config=experiments/lenet_mnist.py",), r"defines no get_sweep"),
    ((TINY, "--config.model_options.activation=elu"),
     r"--config.model_options.activation is also a sweep axis"),
    ((TINY, "--sweep_workers=0"), r"--sweep_workers and --sweep_runs_per_device must be >= 1"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m[:25] for _, m in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, data_dir, args, message):
  config, *extra = args
  done = launch(*sweep_args(tmp_path / "bad", data_dir, *extra, config=config))
  assert done.returncode == 2, done.stderr[-2000:]
  errors = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
  import re  # pylint: disable=import-outside-toplevel
  assert re.search(message, errors[0]), errors[0]


def test_sweep_flags_without_sweep_are_an_error(tmp_path, data_dir):
  done = launch(TINY, f"--workdir={tmp_path}", "--sweep_workers=2")
  assert done.returncode == 2 and "--sweep_workers is only read with --sweep" in done.stderr


def test_a_run_in_a_warm_worker_ends_as_the_same_run_alone(swept, tmp_path):
  """activation=relu/seed=1 started third, in a worker that had run another run: its metrics
  equal those of its own command run alone on the same core, bit for bit (XLA's CPU threads
  split some sums by how many cores there are)."""
  workdir = swept[0]
  header = (workdir / RUNS[1] / "log.txt").read_text().splitlines()[0]
  assert ", in a warm worker, " in header
  core = header.split(" on cpu ")[1].split(",")[0]
  sweep = json.loads((workdir / "sweep.json").read_text())
  argv = next(r["argv"] for r in sweep["runs"] if r["workdir"] == RUNS[1])
  alone = tmp_path / "alone"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "CNNJAX_CACHE": os.environ.get("CNNJAX_CACHE", "/tmp/cnnjax-test-cache"),
         "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
  done = subprocess.run(["taskset", "-c", core, *argv[:-1], f"--workdir={alone}"], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)
  assert argv[-1].startswith("--workdir=")
  assert done.returncode == 0, done.stderr[-2000:]

  def lines(path):
    return [{k: v for k, v in json.loads(line).items() if k != "train/images_per_sec"}
            for line in open(path)]

  assert lines(alone / "metrics.jsonl") == lines(workdir / RUNS[1] / "metrics.jsonl")
  assert done.stdout.splitlines()[-1] in (workdir / RUNS[1] / "log.txt").read_text()
