"""Prepares a tfds dataset for training (the one step that needs TensorFlow):

  python -m cnnjax.data cifar10 [--data_dir=DIR] [--manual_dir=DIR]
"""

import importlib.util

from absl import flags

from cnnjax import cli

flags.DEFINE_string("data_dir", None, "tfds data dir (default: $TFDS_DATA_DIR or "
                    "~/tensorflow_datasets).")
flags.DEFINE_string("manual_dir", None, "Where manually downloaded archives are (imagenet2012).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    cli.fail("name one dataset, e.g. python -m cnnjax.data cifar10")
  if importlib.util.find_spec("tensorflow") is None:
    cli.fail("preparing a tfds dataset needs TensorFlow: pip install tensorflow (training does "
             "not).")
  from cnnjax.data import prepare  # pylint: disable=import-outside-toplevel  # imports tfds
  with cli.reported():
    print(prepare.prepare(argv[1], FLAGS.data_dir, FLAGS.manual_dir))


if __name__ == "__main__":
  cli.run(main)
