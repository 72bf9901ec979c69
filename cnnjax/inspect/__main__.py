"""Look inside a CNN from the command line.

  python -m cnnjax.inspect summarize --model=vgg16 [--input_size=224] [--num_classes=K]
                                     [--format=table|json|csv]
  python -m cnnjax.inspect visualize --workdir=runs/lenet [--image=FILE | --index=N]
                                     [--layers=stem,stage2] [--seed=0] ...
  python -m cnnjax.inspect course

Bad input ends with one line ``error: ...`` on stderr and exit code 2, as launch.py does.
"""

from __future__ import annotations

import os

from absl import flags

from cnnjax import cli, compilation
from cnnjax.cli import fail

COMMANDS = ("summarize", "visualize", "course")

flags.DEFINE_string("model", None, "summarize: a registered model name.")
flags.DEFINE_integer("input_size", None, "summarize: square input size (default: the model's).",
                     lower_bound=1)
flags.DEFINE_integer("num_classes", None, "summarize: classifier size (default: the model's).",
                     lower_bound=1)
flags.DEFINE_enum("format", "table", ["table", "json", "csv"], "summarize: output format.")
flags.DEFINE_string("workdir", None, "visualize: a training run or a pretrained-weights dir.")
flags.DEFINE_string("out", None, "visualize: where the PNGs go (default: WORKDIR/inspect).")
flags.DEFINE_string("data_dir", None, "visualize: tfds data dir (default: the run's).")
flags.DEFINE_string("dataset", None, "visualize: dataset for inputs and top patches, for "
                    "sources that have none (pretrained weights).")
flags.DEFINE_string("split", "test", "visualize: split of --dataset.")
flags.DEFINE_string("image", None, "visualize: input image file (default: --index of the data).")
flags.DEFINE_integer("index", 0, "visualize: example of the evaluation split to look at.",
                     lower_bound=0)
flags.DEFINE_list("layers", None, "visualize: layers (sown names like stem,stage2 or module "
                  "paths like conv1); default: every sown feature map.")
flags.DEFINE_string("gradcam_layer", None, "visualize: feature map for Grad-CAM (default: the "
                    "last of --layers).")
flags.DEFINE_bool("ema", False, "visualize: a training run's moving averages of the weights "
                  "(a run with config.ema.decay > 0) instead of its weights.")
flags.DEFINE_integer("seed", 0, "visualize: seed of the activation maximisation.")
flags.DEFINE_integer("steps", 256, "visualize: gradient-ascent steps.", lower_bound=1)
flags.DEFINE_integer("max_channels", 16, "visualize: channels shown per layer.", lower_bound=1)
flags.DEFINE_integer("top_k", 8, "visualize: top-activating patches per channel.", lower_bound=1)
flags.DEFINE_integer("num_images", 1000, "visualize: dataset images searched for patches.",
                     lower_bound=1)
FLAGS = flags.FLAGS

OWN = {
    "summarize": {"model", "input_size", "num_classes", "format"},
    "visualize": {"workdir", "out", "data_dir", "dataset", "split", "image", "index", "layers",
                  "gradcam_layer", "seed", "steps", "max_channels", "top_k", "num_images"},
    "course": set(),
}


def _check_command(argv: list[str]) -> str:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    got = " ".join(argv[1:]) or "nothing"
    fail(f"expected one command, got {got!r}. Valid choices: {', '.join(COMMANDS)}.")
  command = argv[1]
  ours = set().union(*OWN.values())
  stray = sorted(n for n in ours - OWN[command] if FLAGS[n].present)
  if stray:
    fail(f"--{stray[0]} is not a flag of {command!r}; it takes "
         f"{', '.join('--' + f for f in sorted(OWN[command])) or 'no flags'}.")
  return command


def summarize() -> None:
  from cnnjax.inspect import summary  # pylint: disable=import-outside-toplevel
  if FLAGS.model is None:
    fail("--model is required, e.g. --model=vgg16.")
  s = summary.summarize(FLAGS.model, FLAGS.input_size, FLAGS.num_classes)
  print(summary.render(s, FLAGS.format))


def visualize() -> None:
  # pylint: disable=import-outside-toplevel
  import dataclasses
  from cnnjax.data import sources
  from cnnjax.inspect import loading, pictures
  if FLAGS.workdir is None:
    fail("--workdir is required: a training run or a pretrained-weights directory.")
  item = loading.load(FLAGS.workdir, FLAGS.data_dir, ema=FLAGS.ema)
  if FLAGS.dataset is not None:
    item = dataclasses.replace(item, dataset=sources.load(FLAGS.dataset, FLAGS.split,
                                                          FLAGS.data_dir))
  image = loading.read_image(FLAGS.image) if FLAGS.image else None
  out = FLAGS.out or os.path.join(FLAGS.workdir, "inspect")
  report = pictures.write_all(
      item, out, image=image, index=FLAGS.index, layers=FLAGS.layers, seed=FLAGS.seed,
      steps=FLAGS.steps, max_channels=FLAGS.max_channels, top_k=FLAGS.top_k,
      num_images=FLAGS.num_images, gradcam_layer=FLAGS.gradcam_layer)
  for name, facts in report.items():
    print(f"wrote {os.path.join(out, name)}{pictures.caption(facts)}")


def course() -> None:
  from cnnjax.inspect import course as course_lib  # pylint: disable=import-outside-toplevel
  print(course_lib.report())


def main(argv: list[str]) -> None:
  command = _check_command(argv)
  cli.quiet_logging()
  compilation.persistent_cache()
  with cli.reported():  # e.g. exit 3 when no checkpoint of the run can be restored
    {"summarize": summarize, "visualize": visualize, "course": course}[command]()


if __name__ == "__main__":
  cli.run(main)
