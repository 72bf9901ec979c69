"""The sweep on a real Slurm: a one-node cluster on this host (``slurm_cluster.py``: Debian's
slurm-wlm and munge, slurmctld + slurmd as root), an array run to its end with the summary
written by the dependent report job, and Slurm's USR2 warning (``scancel --signal=USR2``, as
before a preemption or a time limit) to a running task: the run saves, is requeued and ends
done. Skips with one notice line where apt, root or the packages are missing.

One cluster at a time on a host: pytest-xdist may hand this module's tests to both workers (its
``xdist_group`` does not group under pytest 9.2), and two clusters on one host share munged and
the cores; the second worker's cluster waits for the first's to stop (``slurm_cluster.one_at_a_time``)."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.sweep import slurm_cluster
from tests.sweep.test_sweep import TINY, attempts, read_csv
from tests.test_launch import ROOT, launch

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  pytest.importorskip("submitit")
  with slurm_cluster.one_at_a_time():
    try:
      started = slurm_cluster.Cluster(str(tmp_path_factory.mktemp("slurm"))).start()
    except slurm_cluster.Unavailable as e:
      pytest.skip(f"no real Slurm here: {e}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = started.conf  # for sbatch/squeue here and in every job
    try:
      yield started
    finally:
      started.stop()
      if previous is None:
        os.environ.pop("SLURM_CONF", None)
      else:
        os.environ["SLURM_CONF"] = previous


def submit(workdir, data_dir, *extra, config=TINY):
  done = launch(config, f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", "--sweep",
                "--sweep_executor=slurm", "--slurm_cpus_per_task=1", "--slurm_time_min=10",
                *extra)
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads((workdir / "slurm.json").read_text())


def status(workdir):
  return subprocess.run([sys.executable, "-m", "cnnjax.sweep",
                         "status", str(workdir)], cwd=ROOT, capture_output=True, text=True,
                        timeout=120).stdout


def wait_for(path, timeout=240):
  deadline = time.time() + timeout
  while not path.exists():
    assert time.time() < deadline, f"{path} never appeared"
    time.sleep(1)


def wait_for_job(job, timeout=300):
  """Slurm's final state of ``job`` once it has ended."""
  from cnnjax.sweep import slurm  # pylint: disable=import-outside-toplevel  # submitit
  deadline = time.time() + timeout
  while (state := slurm.job_states([job]).get(job, "")) not in ENDED:
    assert time.time() < deadline, f"job {job} still {state or 'unknown'}"
    time.sleep(1)
  return state


ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def test_an_array_runs_to_the_end_and_writes_its_own_summary(cluster, tmp_path, data_dir):
  workdir = tmp_path / "sweep"
  jobs = submit(workdir, data_dir)
  assert sorted(jobs["runs"].values()) == [f"{jobs['array']}_{i}" for i in range(4)]
  assert "slurm " + jobs["runs"]["activation=relu/seed=0"] in status(workdir)
  assert wait_for_job(jobs["report"]) == "COMPLETED"  # the afterany job: no manual step
  assert {r["status"] for r in read_csv(workdir / "results.csv")} == {"done"}
  assert "| activation=gelu |" in (workdir / "summary.md").read_text()
  assert (workdir / "final.png").exists() and (workdir / "curves.png").exists()
  shown = status(workdir)
  assert "4 done of 4 runs" in shown and shown.count(" COMPLETED ") == 4, shown


def test_usr2_from_slurm_saves_the_run_which_is_requeued_and_ends_done(cluster, tmp_path,
                                                                       data_dir):
  workdir = tmp_path / "usr2"
  jobs = submit(workdir, data_dir, "--config.num_steps=400", config=TINY + ":one")
  run_dir = workdir / "activation=elu" / "seed=0"
  wait_for(run_dir / "checkpoints" / "20")
  subprocess.run(["scancel", "--signal=USR2", jobs["runs"]["activation=elu/seed=0"]], check=True)
  assert wait_for_job(jobs["report"]) == "COMPLETED"
  log = (run_dir / "log.txt").read_text()
  result = json.loads((run_dir / "result.json").read_text())
  assert result["status"] == "done" and attempts(run_dir) == 2, log[-3000:]
  assert "resuming from step" in log and "final eval/loss=" in log
  assert {r["status"] for r in read_csv(workdir / "results.csv")} == {"done"}
  assert "stopped by SIGUSR2 at step" in log
