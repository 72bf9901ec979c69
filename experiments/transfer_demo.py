"""The offline transfer-learning demonstration behind the README's table.

  python -m experiments.transfer_demo --workdir=runs/transfer_digits [--seeds=3]

Pretrains LeNet-5 on the embedded MNIST (experiments/transfer_digits.py:pretrain), then trains
on 2 labelled UCI digits per class (--per_class) three ways — linear probe, full fine-tune, from
scratch — for each seed (the seed picks the labelled digits and the head's init), and evaluates
on the 500 test digits. Prints a markdown table (mean ± std of top-1 over seeds) and writes results.json/.md.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import flags

from cnnjax import cli, compilation
from experiments import transfer_digits

flags.DEFINE_string("workdir", None, "Where the runs and the results go.")
flags.DEFINE_integer("seeds", 3, "Seeds per mode.")
flags.DEFINE_integer("per_class", 2, "Labelled UCI digits per class.")
flags.DEFINE_string("data_dir", None, "tfds data dir for the embedded datasets.")
FLAGS = flags.FLAGS

MODES = ("linear_probe", "finetune", "scratch")


def _train(mode: str, workdir: str, data_dir: str | None, **overrides) -> dict[str, float]:
  from cnnjax.train import loop  # pylint: disable=import-outside-toplevel  # imports JAX
  config = transfer_digits.get_config(mode)
  config.data.data_dir = data_dir
  config.update(overrides)
  return loop.train(config, workdir)


def run(workdir: str, seeds: int = 3, per_class: int = 2, data_dir: str | None = None
        ) -> dict[str, list[float]]:
  """Top-1 on the UCI test digits per mode, one entry per seed."""
  pre_dir = os.path.join(workdir, "pretrain")
  pre = _train("pretrain", pre_dir, data_dir)
  results: dict[str, list[float]] = {"pretrain (mnist5k test)": [pre["eval/top1"]]}
  for mode in MODES:
    init = {} if mode == "scratch" else {"init_from": pre_dir}
    results[mode] = [_train(mode, os.path.join(workdir, f"{mode}_{seed}"), data_dir, seed=seed,
                            data={"train_per_class": per_class}, **init)["eval/top1"]
                     for seed in range(seeds)]
  return results


def table(results: dict[str, list[float]]) -> str:
  lines = ["| run | top-1 (mean ± std) | per seed |", "|---|---|---|"]
  for name, values in results.items():
    v = np.asarray(values)
    lines.append(f"| {name} | {v.mean():.3f} ± {v.std():.3f} | "
                 f"{', '.join(f'{x:.3f}' for x in v)} |")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  cli.require("workdir", hint="e.g. --workdir=runs/transfer_digits")
  cli.quiet_logging()
  compilation.persistent_cache()
  with cli.reported():  # a stopped run saved: a rerun resumes it (finished runs only evaluate)
    results = run(FLAGS.workdir, FLAGS.seeds, FLAGS.per_class, FLAGS.data_dir)
  text = table(results)
  with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, allow_nan=False)
  with open(os.path.join(FLAGS.workdir, "results.md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  cli.run(main)
