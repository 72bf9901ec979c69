"""The Slurm path without Slurm: the generated sbatch script (a faked ``sbatch`` on PATH records
it), real runs through submitit's local executor, and a preempted task that is requeued and
resumes from its checkpoint."""

import dataclasses
import glob
import json
import os
import signal
import time
import types

import pytest

from cnnjax import config as config_lib
from cnnjax.errors import UserError
from cnnjax.sweep import slurm, spec, store
# The repository's experiments package, imported before tiny_sweep.py is loaded here, as
# launch.py has it when the sweep loads the file: while a loader runs tests/sweep/tiny_sweep.py,
# tests/ is importable and its ``experiments`` package would shadow the repository's.
from experiments import lenet_mnist  # pylint: disable=unused-import
from tests.sweep.test_sweep import TINY, attempts, read_csv
from tests.test_launch import launch

pytestmark = pytest.mark.e2e  # every test runs launch.py or submitit's processes

FAKE_SBATCH = """#!/bin/sh
here="$(dirname "$0")"
n=$(ls "$here" | grep -c sbatch-)
cp "$1" "$here/sbatch-$n"
echo "Submitted batch job $((4242 + n))"
"""


def test_slurm_submits_one_job_array_with_requeue(tmp_path, data_dir, monkeypatch):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "sbatch").write_text(FAKE_SBATCH)
  (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
  for tool in ("sbatch", "srun"):
    os.chmod(bin_dir / tool, 0o755)
  monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
  workdir = tmp_path / "sweep"
  done = launch(TINY, f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", "--sweep",
                "--sweep_executor=slurm", "--slurm_partition=gpu", "--slurm_gpus_per_task=1",
                "--slurm_time_min=30", "--slurm_array_parallelism=2")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "submitted 4 run(s) as job array 4242" in done.stderr
  assert "the summary is written by job 4243 when the array ends (afterany:4242)" in done.stderr
  script = (bin_dir / "sbatch-0").read_text()
  for line in ("#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
               "#SBATCH --time=30", "#SBATCH --requeue", "#SBATCH --signal=USR2@90",
               "#SBATCH --job-name=cnnjax-sweep"):
    assert line in script.splitlines(), (line, script)
  assert "-m submitit.core._submit" in script
  report = (bin_dir / "sbatch-1").read_text().splitlines()
  assert "#SBATCH --dependency=afterany:4242" in report and "#SBATCH --array" not in str(report)
  assert "#SBATCH --job-name=cnnjax-sweep-report" in report
  jobs = json.loads((workdir / "slurm.json").read_text())
  assert jobs["array"] == "4242" and jobs["report"] == "4243"
  assert sorted(jobs["runs"].values()) == [f"4242_{i}" for i in range(4)]
  assert len(glob.glob(str(workdir / "submitit" / "4242_*" / "*_submitted.pkl"))) == 4
  assert not glob.glob(str(workdir / "*" / "seed=*" / "log.txt"))  # nothing ran here


def test_submitit_local_executor_runs_the_sweep(tmp_path, data_dir):
  workdir = tmp_path / "sweep"
  done = launch(TINY + ":one", f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
                "--sweep", "--sweep_executor=submitit_local")
  assert done.returncode == 0, done.stderr[-2000:]
  rows = read_csv(workdir / "results.csv")
  assert [r["status"] for r in rows] == ["done", "done"] and all(r["eval/top1"] for r in rows)
  assert (workdir / "summary.md").exists() and (workdir / "final.png").exists()


def _wait_for(path, timeout=300):
  deadline = time.time() + timeout
  while not os.path.exists(path):
    assert time.time() < deadline, f"{path} never appeared"
    time.sleep(0.1)


def test_a_preempted_task_is_requeued_and_resumes(tmp_path, data_dir, monkeypatch):
  monkeypatch.setenv("CNNJAX_CACHE", os.environ.get("CNNJAX_CACHE", "/tmp/cnnjax-test-cache"))
  overrides = ["--config.num_steps=200", f"--config.data.data_dir={data_dir}"]
  config = config_lib.load("tests/sweep/tiny_sweep.py:one")
  config.num_steps, config.data.data_dir = 200, data_dir
  plan = spec.expand(spec.load("tests/sweep/tiny_sweep.py:one"), config)
  plan = dataclasses.replace(plan, trials=plan.trials[:1])
  workdir = str(tmp_path / "sweep")
  store.write_sweep(workdir, plan, launch="launch.py", config_spec="tests/sweep/tiny_sweep.py:one",
                    cli_overrides=overrides, command=["test"])
  executor = slurm.make_executor(workdir, "submitit_local", slurm.SlurmOptions(time_min=10))
  job = executor.map_array(slurm.Task(workdir), [0])[0]
  run_dir = plan.trials[0].run_dir(workdir)
  _wait_for(os.path.join(run_dir, "checkpoints", "10"))
  # What Slurm does before preempting: USR2 to the task (the claim names its pid).
  pid = int(open(os.path.join(run_dir, store.CLAIM)).read().split("pid ")[1])
  os.kill(pid, signal.SIGUSR2)
  deadline = time.time() + 300
  while not job.done() and time.time() < deadline:
    time.sleep(0.5)
  log = open(os.path.join(run_dir, store.LOG)).read()
  assert json.load(open(os.path.join(run_dir, store.RESULT)))["status"] == "done", log[-3000:]
  assert "stopped by SIGTERM at step" in log and "resuming from step" in log
  assert attempts(run_dir) == 2
  assert "final eval/loss=" in log


def test_the_requeues_at_the_time_limit_are_a_flag(tmp_path, monkeypatch):
  (tmp_path / "srun").write_text("#!/bin/sh\nexit 0\n")
  os.chmod(tmp_path / "srun", 0o755)
  monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
  executor = slurm.make_executor(str(tmp_path), "slurm", slurm.SlurmOptions(max_timeouts=7))
  assert executor._executor.max_num_timeout == 7  # pylint: disable=protected-access


def test_a_negative_max_timeouts_is_one_line():
  flags = types.SimpleNamespace(slurm_partition=None, slurm_time_min=60, slurm_gpus_per_task=0,
                                slurm_cpus_per_task=None, slurm_array_parallelism=256,
                                slurm_account=None, slurm_max_timeouts=-1)
  with pytest.raises(UserError, match=r"^--slurm_max_timeouts must be >= 0, got -1\.$"):
    slurm.options_from_flags(flags)
  assert slurm.options_from_flags(types.SimpleNamespace(**{**vars(flags), "slurm_max_timeouts": 0}
                                                        )).max_timeouts == 0
