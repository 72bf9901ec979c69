"""Ablation studies: a sweep declared in an experiment file, run as one child process per run.

  spec.py     Sweep, product / zipped / chain / variants; expanding and checking every trial
              (one point × one seed) into a SweepPlan
  naming.py   stable variant names (the keys that differ from the base config)
  env.py      which devices or cores each worker's children see
  store.py    the sweep directory's files and their typed records (SweepRecord, Trial,
              TrialResult): sweep.json, result.json, logs, claims; the only JSON boundary
  child.py    one trial as a ``launch.py`` child process
  runner.py   N local workers, retries, stop and resume
  slurm.py    a Slurm job array through submitit (and submitit's local executor)
  results.py  DIR/results.csv (one ResultRow per trial) from the runs' own files
  stats.py    mean, std, t intervals, Welch and paired t-tests, Holm
  report.py   summary.csv / summary.md, the mean curves for TensorBoard
  plots.py    curves.png, final.png
  flags.py    the --sweep* and --slurm_* flags of launch.py; cli.py runs them
  api.py      the same from Python: run(config or experiment file, DIR, sweep=...) returns the
              typed results (ResultRow per run, the summary's rows, values per seed)
  __main__.py python -m cnnjax.sweep status|report DIR

Experiment files import the declaring names from here: ``from cnnjax.sweep import Sweep``.
Nothing in the library imports this package.
"""

from cnnjax.sweep.spec import Axes, Sweep, chain, product, variants, zipped

__all__ = ["Axes", "Sweep", "chain", "product", "variants", "zipped"]
