"""Beyond one machine: the sweep's runs as one Slurm job array, through submitit.

Each array task runs the same child command a local worker would (``launch.py ...`` with its
``log.txt``, claim and result.json), so the local and Slurm paths share every behaviour. When
Slurm preempts or times out a task, submitit signals it (``USR2``, ``signal_delay_s`` before
the kill) and calls ``Task.checkpoint``: the child is sent SIGTERM, saves a checkpoint at its
step, and the task is requeued with the same arguments; the requeued child resumes from the
checkpoint. Slurm sends that USR2 to every process of the step, the child included: a child that
stops on a signal is ``stopped`` (never failed), and a task whose child stopped without submitit
being told starts it again (it resumes). A run whose ``run.lock`` a live process holds is waited
on, never started twice.

When the array ends the report (summary, plots, mean curves) is written by a second, dependent
job (``--dependency=afterany:<array>``): Slurm starts it once every task has reached a final
state, whichever ends last, failed or cancelled ones included, and a requeued task keeps it
waiting. ("The last task to finish writes it" races between tasks ending together and never
happens when the last task is killed.) DIR/slurm.json records the array's job id, the report
job's, and each run's array task, so ``python -m cnnjax.sweep status DIR`` shows Slurm's own
state per run (``squeue``/``sacct``).

``submitit_local`` runs the same tasks with submitit's local executor (each task a local process)
and waits for them, which is how the path is tested without Slurm.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time

import submitit

from cnnjax import files
from cnnjax.errors import UserError
from cnnjax.sweep import child as child_lib, env as env_lib, results, store


SLURM_FILE = store.SLURM_FILE  # {"array": id, "report": id, "runs": {workdir: "<array>_<task>"}}
LOCK_POLL_S = 5.0


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
  partition: str | None = None
  time_min: int = 60
  gpus_per_task: int = 0
  cpus_per_task: int | None = None
  array_parallelism: int = 256
  account: str | None = None
  max_timeouts: int = 3  # submitit's max_num_timeout: requeues at the time limit


def options_from_flags(flags) -> SlurmOptions:
  if flags.slurm_max_timeouts < 0:
    raise UserError(f"--slurm_max_timeouts must be >= 0, got {flags.slurm_max_timeouts}.")
  return SlurmOptions(flags.slurm_partition, flags.slurm_time_min, flags.slurm_gpus_per_task,
                 flags.slurm_cpus_per_task, flags.slurm_array_parallelism, flags.slurm_account,
                 flags.slurm_max_timeouts)


class Task(submitit.helpers.Checkpointable):
  """One array task: runs trial ``index`` of the sweep in ``sweep_dir`` to its end."""

  def __init__(self, sweep_dir: str):
    self.sweep_dir = sweep_dir
    self._child = None

  def __getstate__(self):
    return {"sweep_dir": self.sweep_dir}  # the running child never travels

  def __setstate__(self, state):
    self.sweep_dir, self._child = state["sweep_dir"], None

  def __call__(self, index: int) -> str:
    record = store.read_sweep(self.sweep_dir)
    trial = record.trials[index]
    run_dir = trial.run_dir(self.sweep_dir)
    if store.is_done(run_dir, trial.config_hash):
      return "done"
    slot = env_lib.Slot({}, None, os.environ.get("SLURM_JOB_ID", "local"))
    previous = store.read_result(run_dir)
    attempt = (previous.attempt if previous else 0) + 1
    while True:
      while child_lib.lock_held(run_dir):  # running elsewhere (an orphan, another host): wait
        time.sleep(LOCK_POLL_S)
      self._child = child_lib.Child(trial, self.sweep_dir, slot, attempt, record.cwd)
      if not self._child.claimed:
        return "claimed elsewhere"
      if self._child.elsewhere:
        continue  # the lock was taken again between the two looks
      rc = self._child.wait()
      results.write_results(self.sweep_dir, record)
      if rc not in child_lib.STOPPED:
        break
      attempt += 1  # stopped by a signal submitit was not told of: it saved, resume it
    if rc != 0:
      raise RuntimeError(f"{trial.workdir}: exit {rc}: {store.last_error(run_dir)}")
    return "done"

  def checkpoint(self, *args, **kwargs):
    """Preempted or timed out: the child saves (SIGTERM), then submitit requeues the task."""
    if self._child is not None:
      self._child.stop()
      self._child.wait()
    return super().checkpoint(*args, **kwargs)


def make_executor(sweep_dir: str, kind: str, options: SlurmOptions):
  """submitit's executor of ``kind`` (one of ``flags.EXECUTORS`` but local)."""
  folder = os.path.join(sweep_dir, "submitit", "%j")
  if kind == "submitit_local":
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=options.time_min)
    return executor
  try:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                     slurm_max_num_timeout=options.max_timeouts)
  except RuntimeError as e:  # no srun/sbatch here
    raise UserError(f"--sweep_executor=slurm: {str(e).splitlines()[0]}") from None
  params = {"timeout_min": options.time_min, "name": "cnnjax-sweep",
            "slurm_array_parallelism": options.array_parallelism,
            "slurm_additional_parameters": {"requeue": True}}
  if options.partition:
    params["slurm_partition"] = options.partition
  if options.gpus_per_task:
    params["slurm_gpus_per_task"] = options.gpus_per_task
  if options.cpus_per_task:
    params["cpus_per_task"] = options.cpus_per_task
  if options.account:
    params["slurm_account"] = options.account
  executor.update_parameters(**params)
  return executor


def submit(sweep_dir: str, record: store.SweepRecord, *, kind: str, options: SlurmOptions,
           stream=None) -> int:
  """Submits every trial not yet done as one array; with ``submitit_local`` waits for the end."""
  stream = stream or sys.stderr
  todo = [i for i, trial in enumerate(record.trials)
          if not store.is_done(trial.run_dir(sweep_dir), trial.config_hash)]
  if not todo:
    print("sweep: every run is done.", file=stream)
    return _report(sweep_dir, record, stream)
  jobs = make_executor(sweep_dir, kind, options).map_array(Task(sweep_dir), todo)
  array = jobs[0].job_id.split("_")[0]
  print(f"submitted {len(jobs)} run(s) as job array {array}; watch with "
        f"python -m cnnjax.sweep status {sweep_dir}", file=stream)
  if kind != "submitit_local":
    report_job = submit_report(sweep_dir, array, options)
    print(f"the summary is written by job {report_job} when the array ends (afterany:{array}): "
          f"{os.path.join(sweep_dir, 'summary.md')}", file=stream)
    write_jobs(sweep_dir, record, todo, jobs, report_job)
    return 0
  while not all(job.done() for job in jobs):
    time.sleep(0.5)
  failed = [(record.trials[i].workdir, job) for i, job in zip(todo, jobs)
            if job.state != "DONE" and job.exception() is not None]
  for workdir, job in failed:
    print(f"failed: {workdir} ({str(job.exception()).strip().splitlines()[-1][:300]})",
          file=stream)
  code = _report(sweep_dir, record, stream)
  return 3 if failed else code


def write_report(sweep_dir: str) -> str:
  """The dependent job's work: the whole report from the runs' files."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_platforms", "cpu")  # MACs are counted abstractly
  from cnnjax.sweep import report  # pylint: disable=import-outside-toplevel
  report.write_all(sweep_dir, store.read_sweep(sweep_dir))
  return os.path.join(sweep_dir, "summary.md")


def submit_report(sweep_dir: str, array: str, options: SlurmOptions) -> str:
  """Submits ``write_report`` to start once every task of ``array`` has ended; its job id."""
  executor = make_executor(sweep_dir, "slurm", dataclasses.replace(
      options, time_min=min(options.time_min, 30), gpus_per_task=0, cpus_per_task=1))
  executor.update_parameters(name="cnnjax-sweep-report", slurm_additional_parameters={
      "dependency": f"afterany:{array}"})
  return executor.submit(write_report, sweep_dir).job_id


def write_jobs(sweep_dir: str, record: store.SweepRecord, todo, jobs, report_job: str) -> None:
  """DIR/slurm.json: the array, the report job and each submitted run's array task (the runs
  of earlier submissions keep theirs)."""
  path = os.path.join(sweep_dir, SLURM_FILE)
  try:
    runs = dict(files.read_json(path).get("runs", {}))
  except (OSError, ValueError, AttributeError):
    runs = {}
  runs.update({record.trials[i].workdir: job.job_id for i, job in zip(todo, jobs)})
  files.write_json(path, {"array": jobs[0].job_id.split("_")[0], "report": report_job,
                          "runs": runs}, indent=1)


def read_jobs(sweep_dir: str) -> dict | None:
  try:
    return files.read_json(os.path.join(sweep_dir, SLURM_FILE))
  except (OSError, ValueError):
    return None


def job_states(job_ids) -> dict[str, str]:
  """Slurm's state of each job (``123_4`` for an array task): squeue's (with the reason when
  pending), else sacct's; jobs neither knows are left out. Empty without squeue/sacct."""
  arrays = sorted({j.split("_")[0] for j in job_ids})
  states: dict[str, str] = {}
  if not arrays:
    return states
  if shutil.which("squeue"):
    out = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays), "-o", "%i|%T|%r"])
    for line in out.splitlines():
      job, state, reason = (line.split("|") + ["", ""])[:3]
      states[job] = f"{state} ({reason})" if state == "PENDING" and reason not in (
          "", "None") else state
  if shutil.which("sacct") and any(j not in states for j in job_ids):
    out = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(arrays), "-o", "JobID,State"])
    for line in out.splitlines():
      job, _, state = line.partition("|")
      states.setdefault(job, state.split()[0] if state else "")
  return {j: s for j, s in states.items() if s}


def _run(cmd) -> str:
  try:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.SubprocessError):
    return ""
  return done.stdout if done.returncode == 0 else ""


def _report(sweep_dir: str, record: store.SweepRecord, stream) -> int:
  from cnnjax.sweep import report  # pylint: disable=import-outside-toplevel
  report.write_all(sweep_dir, record)
  print(f"summary in {os.path.join(sweep_dir, 'summary.md')}", file=stream)
  return 0
