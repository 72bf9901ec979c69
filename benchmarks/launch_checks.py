"""The training checks of ``benchmarks.accelerator``: ``launch.py`` run as a user runs it, each
run its own child process, so the parent never holds the accelerator.

- ``training``: the README's main command twice (final line, images/s, compile time; are the two
  runs identical?), on a GPU twice more with XLA's deterministic ops; then a run killed with
  SIGKILL once its first checkpoint is on disk and rerun: is it the uninterrupted run, bit for bit?
- ``sweep``: a smoke sweep with several runs sharing each device: runs per minute.

"Identical" compares the final line and every logged train and eval metric (``metrics.jsonl``,
full float32 precision; only the images/s differ between runs).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = ("launch.py", "--config=experiments/lenet_mnist.py")
DETERMINISTIC = "--xla_gpu_deterministic_ops=true"
RATE = "train/images_per_sec"
_COMPILE = re.compile(r"^compilation: ([\d.]+) s compiling", re.M)


@dataclasses.dataclass
class Outcome:
  """What one launch.py run printed and logged."""

  exit: int
  wall_s: float
  final: str | None  # the ``final ...`` line
  images_per_s: float | None  # median of the logged windows
  compile_s: float | None
  metrics: list[dict]  # metrics.jsonl, images/s left out
  error: str | None = None

  def same_as(self, other: Outcome) -> bool:
    return self.final is not None and (self.final, self.metrics) == (other.final, other.metrics)

  def summary(self) -> dict:
    return {k: v for k, v in dataclasses.asdict(self).items() if k != "metrics"}


@dataclasses.dataclass
class Started:
  proc: subprocess.Popen
  workdir: str
  start: float


def start(workdir: str, args: tuple[str, ...], env: dict[str, str]) -> Started:
  cmd = [sys.executable, *MAIN, f"--workdir={workdir}", *args]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  return Started(proc, workdir, time.perf_counter())


def finish(run: Started) -> Outcome:
  out, _ = run.proc.communicate()
  wall = time.perf_counter() - run.start
  final = next((l for l in out.splitlines() if l.startswith("final ")), None)
  compiled = _COMPILE.search(out)
  rows = _metrics(run.workdir)
  rates = [r[RATE] for r in rows if RATE in r]
  return Outcome(exit=run.proc.returncode, wall_s=wall, final=final,
                 images_per_s=statistics.median(rates) if rates else None,
                 compile_s=float(compiled.group(1)) if compiled else None,
                 metrics=[{k: v for k, v in r.items() if k != RATE} for r in rows],
                 error=None if run.proc.returncode == 0 else (out.strip().splitlines() or
                                                             ["(no output)"])[-1])


def _metrics(workdir: str) -> list[dict]:
  import json  # pylint: disable=import-outside-toplevel
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def first_checkpoint(workdir: str) -> int | None:
  """The lowest finished checkpoint step in ``workdir`` (orbax writes into a temporary name and
  renames it when done)."""
  steps = [int(os.path.basename(p)) for p in glob.glob(os.path.join(workdir, "checkpoints", "*"))
           if os.path.basename(p).isdigit()]
  return min(steps) if steps else None


def kill_after_first_checkpoint(run: Started, timeout_s: float = 600.0) -> dict:
  """SIGKILL ``run`` as soon as its first checkpoint is on disk; whether it was still running."""
  while run.proc.poll() is None and time.perf_counter() - run.start < timeout_s:
    step = first_checkpoint(run.workdir)
    if step is not None:
      run.proc.send_signal(signal.SIGKILL)
      run.proc.communicate()
      return {"killed_after_step": step, "killed_while_running": True}
    time.sleep(0.02)
  run.proc.communicate()
  return {"killed_after_step": None, "killed_while_running": False}


def training(tmp: str, args: tuple[str, ...], *, gpu: bool, concurrent: bool,
             fresh_cache: bool = True) -> dict:
  """The main command twice, (GPU) twice with deterministic ops, and kill -9 + resume.

  ``concurrent`` (the CPU smoke form) overlaps the killed run with the first run and its resume
  with the second, to save the start-up time; on an accelerator every run has it to itself.
  ``fresh_cache``: an empty compilation cache, so the first run compiles and the second loads
  (else the user's cache: the smoke form's runs all load)."""
  env = dict(os.environ)
  if fresh_cache:
    env["CNNJAX_CACHE"] = os.path.join(tmp, "jax_cache")
  det_env = {**env, "XLA_FLAGS": f"{env.get('XLA_FLAGS', '')} {DETERMINISTIC}".strip()}
  resume_env = det_env if gpu else env  # bit for bit is only expected with determinism on
  runs: dict[str, Outcome] = {}
  kill = lambda: start(os.path.join(tmp, "killed"), args, resume_env)
  first = start(os.path.join(tmp, "run1"), args, env)
  killed = kill_after_first_checkpoint(kill()) if concurrent else None
  runs["run 1"] = finish(first)
  if killed is None:
    killed = kill_after_first_checkpoint(kill())
  second = start(os.path.join(tmp, "run2"), args, env)
  resumed = kill() if concurrent else None
  runs["run 2"] = finish(second)
  if gpu:
    runs["deterministic 1"] = finish(start(os.path.join(tmp, "det1"), args, det_env))
    runs["deterministic 2"] = finish(start(os.path.join(tmp, "det2"), args, det_env))
  runs["kill -9, rerun"] = finish(resumed or kill())
  reference = runs["deterministic 1" if gpu else "run 1"]
  same = {"run 2": runs["run 2"].same_as(runs["run 1"]),
          "kill -9, rerun": runs["kill -9, rerun"].same_as(reference)}
  if gpu:
    same["deterministic 2"] = runs["deterministic 2"].same_as(runs["deterministic 1"])
  return {"runs": {k: v.summary() for k, v in runs.items()}, "identical": same,
          "compared_with": {"run 2": "run 1", "deterministic 2": "deterministic 1",
                            "kill -9, rerun": "deterministic 1" if gpu else "run 1"},
          "kill": killed, "args": list(args)}


def sweep(workdir: str, experiment: str, *, per_device: int, gpu: bool) -> dict:
  """One local sweep with ``per_device`` runs on each GPU (on CPU: that many workers, which
  split the cores); its wall time and runs per minute."""
  slots = f"--sweep_runs_per_device={per_device}" if gpu else f"--sweep_workers={per_device}"
  cmd = [sys.executable, "launch.py", f"--config={experiment}", f"--workdir={workdir}",
         "--sweep", slots]
  t = time.perf_counter()
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - t
  runs = len(glob.glob(os.path.join(workdir, "*", "seed=*", "metrics.jsonl")))
  return {"per_device": per_device, "runs": runs, "wall_s": wall, "exit": done.returncode,
          "runs_per_minute": 60 * runs / wall if runs else None,
          "error": None if done.returncode == 0 else
          (done.stderr.strip().splitlines() or ["(no output)"])[-1]}
