"""The files of a sweep directory: sweep.json, each run's result.json, log and claim.

  DIR/sweep.json                 the expanded runs (each with its child command), the command,
                                 the commit, the package versions, the points no longer swept
  DIR/<variant>/seed=<s>/        the run's own workdir (launch.py's files), plus
      log.txt                    the child's stdout and stderr, every attempt appended
      result.json                written by the sweep when the child ends: status, the hash of
                                 the run's config, exit code, wall time, the error's last line
      claim.lock                 an OS ``flock`` held by whichever host runs it (gone with it)

A run is done when its result.json says ``done`` with the hash of the run's current config.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from cnnjax.sweep import naming, spec
from cnnjax.train.workdir import write_json

SWEEP_FILE = "sweep.json"
RESULT = "result.json"
LOG = "log.txt"
CLAIM = "claim.lock"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml-collections",
            "grain", "tensorflow-datasets", "submitit", "scipy")


def cli_value(value: Any) -> str:
  """How ``--config.key=VALUE`` spells a value (ml_collections parses it back)."""
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  return str(value)


def child_argv(launch: str, config_spec: str, cli_overrides: Sequence[str], run: spec.Run,
               sweep_dir: str) -> list[str]:
  """The exact command line a single run of this point and seed would be given."""
  path, sep, arg = config_spec.partition(":")
  return [sys.executable, os.path.abspath(launch), f"--config={os.path.abspath(path)}{sep}{arg}",
          *cli_overrides, f"--config.seed={run.seed}",
          *(f"--config.{k}={cli_value(v)}" for k, v in run.overrides.items()),
          f"--workdir={os.path.join(sweep_dir, run.workdir)}"]


def _commit(path: str) -> str | None:
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                         timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None


def _versions() -> dict[str, str]:
  found = {"python": platform.python_version()}
  for name in PACKAGES:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
      found[name] = importlib.metadata.version(name)
  return found


def read_sweep(sweep_dir: str) -> dict | None:
  path = os.path.join(sweep_dir, SWEEP_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_sweep(sweep_dir: str, plan: spec.Plan, *, launch: str, config_spec: str,
                cli_overrides: Sequence[str], command: Sequence[str]) -> dict:
  """Writes sweep.json, keeping the points an earlier command had that this one has not."""
  old = read_sweep(sweep_dir)
  if old is not None and old["base_hash"] != plan.base_hash:
    raise spec.UserError(f"{sweep_dir} holds a sweep of another base config (command: "
                         f"{' '.join(old['command'])}); use a new --workdir.")
  runs = [{"variant": r.variant, "seed": r.seed, "workdir": r.workdir,
           "config_hash": r.config_hash, "overrides": r.overrides,
           "argv": child_argv(launch, config_spec, cli_overrides, r, sweep_dir)}
          for r in plan.runs]
  current = {r["workdir"] for r in runs}
  removed = [] if old is None else sorted(
      {r["workdir"] for r in old["runs"] if r["workdir"] not in current} | set(
          w for w in old.get("removed", []) if w not in current))
  value = {"command": list(command), "cwd": os.getcwd(), "config": config_spec,
           "cli_overrides": list(cli_overrides), "base_hash": plan.base_hash,
           "metric": plan.metric, "baseline": plan.baseline, "variants": plan.variants,
           "commit": _commit(os.path.dirname(os.path.abspath(launch))),
           "versions": _versions(), "host": socket.gethostname(),
           "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": runs, "removed": removed}
  os.makedirs(sweep_dir, exist_ok=True)
  write_json(os.path.join(sweep_dir, SWEEP_FILE), value, indent=1)
  return value


def read_result(run_dir: str) -> dict | None:
  try:
    with open(os.path.join(run_dir, RESULT)) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def write_result(run_dir: str, value: dict) -> None:
  write_json(os.path.join(run_dir, RESULT), value, indent=1)


def is_done(run_dir: str, config_hash: str) -> bool:
  result = read_result(run_dir)
  return bool(result) and result.get("status") == "done" and result.get(
      "config_hash") == config_hash


@contextlib.contextmanager
def claim(run_dir: str) -> Iterator[bool]:
  """Holds the run's claim (an exclusive ``flock``) if no other process holds it; yields
  whether it was taken. On a shared filesystem this keeps hosts from running a run twice."""
  os.makedirs(run_dir, exist_ok=True)
  fd = os.open(os.path.join(run_dir, CLAIM), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield False
      return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode(), 0)
    yield True
  finally:
    os.close(fd)


def is_claimed(run_dir: str) -> bool:
  """Whether a process (here or on another host) holds the run's claim now."""
  path = os.path.join(run_dir, CLAIM)
  if not os.path.exists(path):
    return False
  with claim(run_dir) as taken:
    return not taken


def last_error(run_dir: str) -> str:
  """The last ``error:`` line of the run's log, else its last non-empty line."""
  try:
    with open(os.path.join(run_dir, LOG), errors="replace") as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    return ""
  errors = [line for line in lines if line.startswith("error:")]
  return (errors or lines or [""])[-1][:300]


def variant_dirs(sweep: dict) -> dict[str, list[dict]]:
  """The sweep's runs grouped by variant, in the sweep's order."""
  groups: dict[str, list[dict]] = {}
  for r in sweep["runs"]:
    groups.setdefault(r["variant"], []).append(r)
  return groups


def describe(value: Any) -> str:
  return naming.value_text(value)
