"""A sweep run from Python (a notebook, a script), as ``launch.py --sweep`` runs it from a shell:
expanded and checked before anything starts, sweep.json written, every point × seed run by the
local runner (each run its own ``launch.py`` child with all of a single run's guarantees; runs
already done are skipped, unfinished ones resume), the report written; then the results come
back as typed rows instead of a shell's exit code.

  from cnnjax.sweep import Sweep, api
  results = api.run("experiments/ablations.py:activation,smoke", "runs/activation", workers=2)
  results.values("eval/top1")  # {variant: {seed: final top-1}}
  results.summary              # summary.csv's rows: mean, std, interval, p-values per variant

``config`` is an experiment file (``path.py[:arg]``, what ``--config`` takes) or a ConfigDict
built in Python. A ConfigDict is kept in the sweep directory as the experiment file its runs
load (``DIR/experiment.py``, the config's values over ``cnnjax.config.defaults()``), so the
same sweep can be carried on or reported from a shell.

The runs start as child processes of this one and see the devices ``env.local_slots`` gives
them; on a GPU, a notebook that has already put arrays on the device holds most of its memory
(set ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` before JAX starts).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pprint
import sys
from collections.abc import Mapping
from typing import Any

import ml_collections

from cnnjax import config as config_lib, files
from cnnjax.errors import Stopped, UserError
from cnnjax.sweep import env as env_lib, report, results, runner, spec, store

EXPERIMENT = "experiment.py"  # a ConfigDict's experiment file, in the sweep directory
_EXPERIMENT_TEXT = '''"""The base config of the sweep in this directory, given in Python to cnnjax.sweep.api.run:
its values over cnnjax.config.defaults(). Every run of the sweep loads it (its command line in
sweep.json)."""

from cnnjax import config

VALUES = {values}


def get_config(arg=None):
  del arg
  return config.with_saved(VALUES)
'''


@dataclasses.dataclass(frozen=True)
class SweepResults:
  """What a sweep directory holds once the command has ended: one ``ResultRow`` per run and
  one summary row per variant (summary.csv's columns), read from the runs' own files."""

  directory: str
  record: store.SweepRecord
  rows: tuple[results.ResultRow, ...]
  summary: tuple[dict[str, Any], ...]

  def values(self, metric: str) -> dict[str, dict[int, float]]:
    """``{variant: {seed: final value}}`` of ``metric`` over the runs that are done."""
    return report.per_variant(self.rows, metric)

  @property
  def failed(self) -> tuple[results.ResultRow, ...]:
    return tuple(r for r in self.rows if r.status == "failed")

  def markdown(self) -> str:
    """summary.md's text: one line per variant, the statistics against the baseline."""
    return report.markdown(self.record, list(self.summary))


def launch_script() -> str:
  """launch.py, beside the package in its repository: the command every run starts as."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), "launch.py")
  if not os.path.isfile(path):
    raise UserError(f"no launch.py at {path}: a sweep's runs start as launch.py, which lives in "
                    "the repository beside the package; install it from a checkout "
                    "(pip install -e .).")
  return path


def experiment_text(config: ml_collections.ConfigDict) -> str:
  """An experiment file whose ``get_config()`` gives back ``config``."""
  values = json.loads(config.to_json_best_effort())
  return _EXPERIMENT_TEXT.format(values=pprint.pformat(values, indent=1, width=96))


def _base(config: str | ml_collections.ConfigDict, overrides: Mapping[str, Any],
          sweep: spec.Sweep | None, sweep_dir: str):
  """(experiment spec, its config with the overrides, the ``--config.*`` flags, the sweep, the
  experiment file to write or None)."""
  if isinstance(config, str):
    flags = [f"--config.{k}={store.cli_value(v)}" for k, v in overrides.items()]
    return (config, config_lib.with_values(config_lib.load(config), overrides), flags,
            sweep if sweep is not None else spec.load(config), None)
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"config must be an experiment file (path.py[:arg]) or a ConfigDict, got "
                    f"{type(config).__name__}.")
  if sweep is None:
    raise UserError("a config given as a ConfigDict needs sweep=Sweep(...) (only an experiment "
                    "file can declare its own get_sweep).")
  config = config_lib.with_values(config, overrides)
  base = config_lib.with_saved(json.loads(config.to_json_best_effort()))  # the file's get_config
  return os.path.join(sweep_dir, EXPERIMENT), base, [], sweep, experiment_text(config)


def run(config: str | ml_collections.ConfigDict, workdir: str, *, sweep: spec.Sweep | None = None,
        overrides: Mapping[str, Any] | None = None, workers: int | None = None,
        runs_per_device: int = 1, retries: int = 1, quiet: bool = False) -> SweepResults:
  """Runs (or carries on) a sweep in ``workdir``; returns its results.

  Args:
    config: an experiment file ``path.py[:arg]``, or a ConfigDict.
    workdir: the sweep directory (``DIR/<variant>/seed=<s>/`` per run).
    sweep: the points and seeds; default the experiment file's ``get_sweep(arg)``.
    overrides: dotted config keys set in every run (``--config.key=value`` of the command line).
    workers, runs_per_device: runs at once (``--sweep_workers``, ``--sweep_runs_per_device``).
    retries: retries of a failed run.
    quiet: print nothing (else the runner's status lines go to stderr).

  Raises ``UserError`` before anything starts for any bad input, ``Stopped`` when a signal
  (Ctrl-C, a notebook's interrupt) stopped the runs (each saved; call again to carry on). Runs
  that failed are rows with status ``failed`` and their error (``SweepResults.failed``)."""
  sweep_dir = os.path.abspath(workdir)
  overrides = dict(overrides or {})
  config_spec, base, flags, declared, text = _base(config, overrides, sweep, sweep_dir)
  plan = spec.expand(declared, base, overrides)
  launch = launch_script()
  try:
    record = store.write_sweep(sweep_dir, plan, launch=launch, config_spec=config_spec,
                               cli_overrides=flags, command=(
                                   launch, f"--config={config_spec}", *flags,
                                   f"--workdir={sweep_dir}", "--sweep"))
    if text is not None:  # after write_sweep has refused a directory of another base config
      files.write_atomic(os.path.join(sweep_dir, EXPERIMENT), text)
  except OSError as e:
    raise UserError(f"workdir {workdir!r} can't be written: {e.strerror or e}.") from None
  slots = env_lib.local_slots(workers, runs_per_device)
  code = runner.run(sweep_dir, record, slots, retries=retries,
                    stream=io.StringIO() if quiet else sys.stderr)
  if code > 128:
    raise Stopped(f"the sweep in {sweep_dir} was stopped (each running run saved); call "
                  "run() again to carry on.", code - 128)
  rows = results.collect(sweep_dir, record)
  return SweepResults(sweep_dir, record, tuple(rows), tuple(report.summary_rows(record, rows)))


def load(workdir: str) -> SweepResults:
  """The results of the sweep in ``workdir`` as its files hold them now (runs still pending or
  running included), without running anything."""
  sweep_dir = os.path.abspath(workdir)
  record = store.read_sweep(sweep_dir)
  if record is None:
    raise UserError(f"{workdir!r} holds no {store.SWEEP_FILE}: not a sweep directory.")
  rows = results.collect(sweep_dir, record)
  return SweepResults(sweep_dir, record, tuple(rows), tuple(report.summary_rows(record, rows)))

