"""Beyond one machine: the sweep's runs as one Slurm job array, through submitit.

Each array task runs the same child command a local worker would (``launch.py ...`` with its
``log.txt``, claim and result.json), so the local and Slurm paths share every behaviour. When
Slurm preempts or times out a task, submitit signals it (``USR2``, ``signal_delay_s`` before
the kill) and calls ``Task.checkpoint``: the child is sent SIGTERM, saves a checkpoint at its
step, and the task is requeued with the same arguments; the requeued child resumes from the
checkpoint. ``submitit_local`` runs the same tasks with submitit's local executor (each task a
local process) and waits for them, which is how the path is tested without Slurm.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import submitit

from cnnjax.errors import UserError
from cnnjax.sweep import child as child_lib, env as env_lib, results, store


@dataclasses.dataclass(frozen=True)
class Options:
  partition: str | None = None
  time_min: int = 60
  gpus_per_task: int = 0
  cpus_per_task: int | None = None
  array_parallelism: int = 256
  account: str | None = None


def options_from_flags(flags) -> Options:
  return Options(flags.slurm_partition, flags.slurm_time_min, flags.slurm_gpus_per_task,
                 flags.slurm_cpus_per_task, flags.slurm_array_parallelism, flags.slurm_account)


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
    self._child = child_lib.Child(trial, self.sweep_dir, slot, attempt, record.cwd)
    if not self._child.claimed:
      return "claimed elsewhere"
    rc = self._child.wait()
    results.write_results(self.sweep_dir, record)
    if rc != 0:
      raise RuntimeError(f"{trial.workdir}: exit {rc}: {store.last_error(run_dir)}")
    return "done"

  def checkpoint(self, *args, **kwargs):
    """Preempted or timed out: the child saves (SIGTERM), then submitit requeues the task."""
    if self._child is not None:
      self._child.stop()
      self._child.wait()
    return super().checkpoint(*args, **kwargs)


def make_executor(sweep_dir: str, kind: str, options: Options):
  """submitit's executor of ``kind`` (one of ``flags.EXECUTORS`` but local)."""
  folder = os.path.join(sweep_dir, "submitit", "%j")
  if kind == "submitit_local":
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=options.time_min)
    return executor
  try:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
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


def submit(sweep_dir: str, record: store.SweepRecord, *, kind: str, options: Options,
           stream=None) -> int:
  """Submits every trial not yet done as one array; with ``submitit_local`` waits for the end."""
  stream = stream or sys.stderr
  todo = [i for i, trial in enumerate(record.trials)
          if not store.is_done(trial.run_dir(sweep_dir), trial.config_hash)]
  if not todo:
    print("sweep: every run is done.", file=stream)
    return _report(sweep_dir, record, stream)
  jobs = make_executor(sweep_dir, kind, options).map_array(Task(sweep_dir), todo)
  print(f"submitted {len(jobs)} run(s) as job array {jobs[0].job_id.split('_')[0]}; watch with "
        f"python -m cnnjax.sweep status {sweep_dir}", file=stream)
  if kind != "submitit_local":
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


def _report(sweep_dir: str, record: store.SweepRecord, stream) -> int:
  from cnnjax.sweep import report  # pylint: disable=import-outside-toplevel
  report.write_all(sweep_dir, record)
  print(f"summary in {os.path.join(sweep_dir, 'summary.md')}", file=stream)
  return 0
