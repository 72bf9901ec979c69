"""The files of a sweep directory and their typed records: sweep.json, each run's result.json,
log and claim. This module is the JSON boundary: every other module of the sweep reads and
writes ``SweepRecord``, ``Trial`` and ``TrialResult``, never the dicts.

  DIR/sweep.json                 the expanded runs (each with its child command), the command,
                                 the commit, the package versions, the points no longer swept
  DIR/<variant>/seed=<s>/        the run's own workdir (launch.py's files), plus
      log.txt                    the child's stdout and stderr, every attempt appended
      result.json                written by the sweep when the child ends: status, the hash of
                                 the run's config, exit code, wall time, the error's last line
      claim.lock                 an OS ``flock`` held by whichever host runs it (gone with it)
  DIR/slurm.json                 on Slurm: the array's and the report job's ids, each run's task

A run is done when its result.json says ``done`` with the hash of the run's current config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cnnjax import files
from cnnjax.errors import UserError

if TYPE_CHECKING:
  from cnnjax.sweep.spec import SweepPlan

SWEEP_FILE = "sweep.json"
RESULT = "result.json"
LOG = "log.txt"
CLAIM = "claim.lock"
SLURM_FILE = "slurm.json"  # written by slurm.py: {"array", "report", "runs": {workdir: job id}}
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml-collections",
            "grain", "tensorflow-datasets", "submitit", "scipy")


def trial_dir(variant: str, seed: int) -> str:
  """A run's workdir, relative to the sweep directory."""
  return f"{variant}/seed={seed}"


@dataclasses.dataclass(frozen=True)
class Trial:
  """One point of the sweep with one seed: what it overrides, where it runs, and (once the
  sweep is written) the exact command line that runs it."""

  variant: str
  seed: int
  overrides: Mapping[str, Any]  # the point's dotted keys (the seed not included)
  config_hash: str  # of the run's whole config, seed included
  workdir: str  # relative to the sweep directory
  argv: tuple[str, ...] = ()

  def run_dir(self, sweep_dir: str) -> str:
    return os.path.join(sweep_dir, self.workdir)

  def to_json(self) -> dict[str, Any]:
    return {"variant": self.variant, "seed": self.seed, "workdir": self.workdir,
            "config_hash": self.config_hash, "overrides": dict(self.overrides),
            "argv": list(self.argv)}

  @classmethod
  def from_json(cls, value: Mapping[str, Any]) -> Trial:
    return cls(variant=value["variant"], seed=int(value["seed"]),
               overrides=dict(value.get("overrides", {})), config_hash=value["config_hash"],
               workdir=value.get("workdir") or trial_dir(value["variant"], value["seed"]),
               argv=tuple(value.get("argv", ())))


@dataclasses.dataclass(frozen=True)
class SweepRecord:
  """What sweep.json holds: the trials, how they are compared, and how the sweep was made."""

  trials: tuple[Trial, ...]
  variants: Mapping[str, Mapping[str, Any]]  # name -> the keys it changes from the base config
  metric: str
  baseline: str
  base_hash: str
  config: str  # the experiment file (``path.py[:arg]``)
  command: tuple[str, ...] = ()
  cwd: str | None = None  # where the children run
  cli_overrides: tuple[str, ...] = ()
  commit: str | None = None
  versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
  host: str | None = None
  written: str | None = None
  removed: tuple[str, ...] = ()  # workdirs of earlier commands' points, kept on disk

  def by_variant(self) -> dict[str, list[Trial]]:
    """The trials grouped by variant, in the sweep's order."""
    groups: dict[str, list[Trial]] = {}
    for trial in self.trials:
      groups.setdefault(trial.variant, []).append(trial)
    return groups

  def to_json(self) -> dict[str, Any]:
    return {"command": list(self.command), "cwd": self.cwd, "config": self.config,
            "cli_overrides": list(self.cli_overrides), "base_hash": self.base_hash,
            "metric": self.metric, "baseline": self.baseline,
            "variants": {k: dict(v) for k, v in self.variants.items()}, "commit": self.commit,
            "versions": dict(self.versions), "host": self.host, "written": self.written,
            "runs": [t.to_json() for t in self.trials], "removed": list(self.removed)}

  @classmethod
  def from_json(cls, value: Mapping[str, Any]) -> SweepRecord:
    return cls(trials=tuple(Trial.from_json(t) for t in value["runs"]),
               variants={k: dict(v) for k, v in value["variants"].items()},
               metric=value["metric"], baseline=value["baseline"],
               base_hash=value["base_hash"], config=value.get("config", ""),
               command=tuple(value.get("command", ())), cwd=value.get("cwd"),
               cli_overrides=tuple(value.get("cli_overrides", ())),
               commit=value.get("commit"), versions=dict(value.get("versions", {})),
               host=value.get("host"), written=value.get("written"),
               removed=tuple(value.get("removed", ())))


@dataclasses.dataclass(frozen=True)
class TrialResult:
  """What result.json holds: how the child of a trial ended."""

  status: str  # done | failed | stopped
  config_hash: str
  exit_code: int | None = None
  attempt: int = 0
  ended: str | None = None
  error: str | None = None  # the log's last error line, when not done
  wall_s: float | None = None  # when done: every attempt of this config together
  partial_wall_s: float | None = None  # when not done: so far

  def to_json(self) -> dict[str, Any]:
    out = {"status": self.status, "config_hash": self.config_hash,
           "exit_code": self.exit_code, "attempt": self.attempt, "ended": self.ended}
    for key in ("error", "wall_s", "partial_wall_s"):
      if getattr(self, key) is not None:
        out[key] = getattr(self, key)
    return out

  @classmethod
  def from_json(cls, value: Mapping[str, Any]) -> TrialResult:
    return cls(status=value["status"], config_hash=value["config_hash"],
               exit_code=value.get("exit_code"), attempt=int(value.get("attempt", 0)),
               ended=value.get("ended"), error=value.get("error"), wall_s=value.get("wall_s"),
               partial_wall_s=value.get("partial_wall_s"))


def cli_value(value: Any) -> str:
  """How ``--config.key=VALUE`` spells a value (ml_collections parses it back)."""
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  return str(value)


def child_argv(launch: str, config_spec: str, cli_overrides: Sequence[str], trial: Trial,
               sweep_dir: str) -> tuple[str, ...]:
  """The exact command line a single run of this point and seed would be given."""
  path, sep, arg = config_spec.partition(":")
  return (sys.executable, os.path.abspath(launch), f"--config={os.path.abspath(path)}{sep}{arg}",
          *cli_overrides, f"--config.seed={trial.seed}",
          *(f"--config.{k}={cli_value(v)}" for k, v in trial.overrides.items()),
          f"--workdir={trial.run_dir(sweep_dir)}")


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


class Damaged(UserError):
  """sweep.json is there but can't be read as a sweep (torn, truncated, edited by hand)."""


def read_sweep(sweep_dir: str) -> SweepRecord | None:
  """The sweep's record; None if there is no sweep.json; ``Damaged`` (one line saying which
  file and how) if it can't be read."""
  path = os.path.join(sweep_dir, SWEEP_FILE)
  if not os.path.isfile(path):
    return None
  try:
    return SweepRecord.from_json(files.read_json(path))
  except ValueError as e:  # JSONDecodeError included
    how = f"not JSON ({e})" if os.path.getsize(path) else "empty"
  except KeyError as e:
    how = f"no {e} key"
  except (TypeError, AttributeError) as e:
    how = f"not a sweep record ({e})"
  except OSError as e:
    how = f"unreadable ({e.strerror or e})"
  raise Damaged(f"{path} is damaged: {how}")


def write_sweep(sweep_dir: str, plan: SweepPlan, *, launch: str, config_spec: str,
                cli_overrides: Sequence[str], command: Sequence[str]) -> SweepRecord:
  """Writes sweep.json, keeping the points an earlier command had that this one has not. A
  damaged sweep.json is rebuilt from ``plan`` when the runs' own files agree with it (else
  ``Damaged``); it is kept as sweep.json.damaged, and one line says so on stderr."""
  try:
    old = read_sweep(sweep_dir)
  except Damaged as e:
    _rebuildable(sweep_dir, plan, str(e))
    path = os.path.join(sweep_dir, SWEEP_FILE)
    os.replace(path, path + ".damaged")
    print(f"{e}; rebuilt it from {config_spec} (the runs' own files agree with it; the damaged "
          f"file is kept as {SWEEP_FILE}.damaged).", file=sys.stderr)
    old = None
  if old is not None and old.base_hash != plan.base_hash:
    raise UserError(f"{sweep_dir} holds a sweep of another base config (command: "
                    f"{' '.join(old.command)}); use a new --workdir.")
  trials = tuple(dataclasses.replace(t, argv=child_argv(launch, config_spec, cli_overrides, t,
                                                        sweep_dir)) for t in plan.trials)
  current = {t.workdir for t in trials}
  removed = () if old is None else tuple(sorted(
      {t.workdir for t in old.trials if t.workdir not in current}
      | {w for w in old.removed if w not in current}))
  record = SweepRecord(
      trials=trials, variants=plan.variants, metric=plan.metric, baseline=plan.baseline,
      base_hash=plan.base_hash, config=config_spec, command=tuple(command), cwd=os.getcwd(),
      cli_overrides=tuple(cli_overrides), commit=_commit(os.path.dirname(os.path.abspath(launch))),
      versions=_versions(), host=socket.gethostname(),
      written=time.strftime("%Y-%m-%dT%H:%M:%S%z"), removed=removed)
  os.makedirs(sweep_dir, exist_ok=True)
  files.write_json(os.path.join(sweep_dir, SWEEP_FILE), record.to_json(), indent=1)
  return record


def _rebuildable(sweep_dir: str, plan: SweepPlan, damage: str) -> None:
  """Raises ``Damaged`` unless every run directory under ``sweep_dir`` belongs to ``plan``: its
  result.json has the trial's config hash, or (no result yet) its config.json has the trial's
  seed and swept values."""
  trials = {t.workdir: t for t in plan.trials}
  for result_or_config in sorted(_run_files(sweep_dir)):
    workdir = os.path.relpath(os.path.dirname(result_or_config), sweep_dir)
    trial = trials.get(workdir)
    why = None
    if trial is None:
      why = "is not a run of this experiment file"
    elif os.path.basename(result_or_config) == RESULT:
      result = read_result(os.path.dirname(result_or_config))
      if result is not None and result.config_hash != trial.config_hash:
        why = "has another config hash"
    elif not _config_agrees(result_or_config, trial):
      why = "has another config"
    if why:
      raise Damaged(f"{damage}, and can't be rebuilt: {workdir} {why}; restore it or use a "
                    "new --workdir")


def _run_files(sweep_dir: str) -> Iterator[str]:
  """Each run directory's result.json, or its config.json if it has no result yet."""
  for root, dirs, names in os.walk(sweep_dir):
    dirs[:] = [d for d in dirs if d not in ("checkpoints", "submitit", "mean")]
    if RESULT in names:
      yield os.path.join(root, RESULT)
    elif files.CONFIG in names:
      yield os.path.join(root, files.CONFIG)


def _config_agrees(path: str, trial: Trial) -> bool:
  try:
    config = files.read_json(path)
  except (OSError, ValueError):
    return True  # a torn config.json says nothing; the run rewrites it
  values = {"seed": trial.seed, **trial.overrides}
  for key, want in values.items():
    value: Any = config
    for part in key.split("."):
      value = value.get(part) if isinstance(value, dict) else None
    if value != want and not (isinstance(value, list) and isinstance(want, (list, tuple))
                            and tuple(value) == tuple(want)):
      return False
  return True


def read_result(run_dir: str) -> TrialResult | None:
  """The run's result.json; None if it is missing or unreadable."""
  try:
    return TrialResult.from_json(files.read_json(os.path.join(run_dir, RESULT)))
  except (OSError, ValueError, KeyError, TypeError):  # ValueError: JSON torn or not a record
    return None


def write_result(run_dir: str, result: TrialResult) -> None:
  files.write_json(os.path.join(run_dir, RESULT), result.to_json(), indent=1)


def is_done(run_dir: str, config_hash: str) -> bool:
  result = read_result(run_dir)
  return result is not None and result.status == "done" and result.config_hash == config_hash


@contextlib.contextmanager
def claim(run_dir: str) -> Iterator[bool]:
  """Holds the run's claim (``files.exclusive_lock``) if no other process holds it; yields
  whether it was taken. On a shared filesystem this keeps hosts from running a run twice."""
  os.makedirs(run_dir, exist_ok=True)
  with files.exclusive_lock(os.path.join(run_dir, CLAIM)) as holder:
    yield holder is None


def is_claimed(run_dir: str) -> bool:
  """Whether a process (here or on another host) holds the run's claim now."""
  return files.is_locked(os.path.join(run_dir, CLAIM))


def last_error(run_dir: str) -> str:
  """The last ``error:`` line of the run's log, else its last non-empty line."""
  try:
    with open(os.path.join(run_dir, LOG), errors="replace") as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    return ""
  errors = [line for line in lines if line.startswith("error:")]
  return (errors or lines or [""])[-1][:300]
