"""Converts torchvision weights into a cnnjax pretrained-weights directory.

  python -m cnnjax.transfer --model=resnet50 \
      --weights=~/.cache/torch/hub/checkpoints/resnet50-11ad3fa6.pth --out=weights/resnet50

Reads a state dict from ``.pth`` / ``.pt`` (needs PyTorch) or ``.safetensors``; writes ``--out``
(an orbax checkpoint plus pretrained.json, see ``cnnjax/transfer/pretrained.py``); load it with
``cnnjax.load_pretrained(DIR)``. Bad input ends with one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import os

from absl import flags

from cnnjax import cli

flags.DEFINE_string("model", None, "Registry name: alexnet, vgg11..vgg19[_bn], googlenet, "
                    "inception_v3, resnet18..resnet152.")
flags.DEFINE_string("weights", None, "The state dict: .pth, .pt or .safetensors.")
flags.DEFINE_string("out", None, "Directory to write.")
flags.DEFINE_integer("num_classes", None, "Classes of the file's classifier (default: read "
                     "from the file).")
flags.DEFINE_bool("aux_logits", None, "Keep auxiliary heads (googlenet, inception_v3; "
                  "default: the model's default).")
flags.DEFINE_string("weights_tag", None, "torchvision weights the file holds, e.g. "
                    "IMAGENET1K_V2, for its preprocessing (default: recognised from torchvision's "
                    "file name, else the model's first weights).")
flags.DEFINE_integer("resize_size", None, "Override the preprocessing's resize (shorter side).")
flags.DEFINE_integer("crop_size", None, "Override the preprocessing's centre crop.")
flags.DEFINE_bool("overwrite", False, "Replace converted weights already in --out.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  cli.require("model", "weights", "out")
  cli.quiet_logging()
  from cnnjax.transfer import convert  # pylint: disable=import-outside-toplevel  # imports JAX
  with cli.reported():
    info = convert.convert_file(
        FLAGS.model, os.path.expanduser(FLAGS.weights), os.path.expanduser(FLAGS.out),
        num_classes=FLAGS.num_classes, aux_logits=FLAGS.aux_logits,
        weights_tag=FLAGS.weights_tag, resize=FLAGS.resize_size, crop=FLAGS.crop_size,
        overwrite=FLAGS.overwrite)
  prep = info["preprocessing"]
  tag = info["source"]["torchvision_weights"] or "not torchvision's file; default preprocessing"
  print(f"wrote {os.path.abspath(FLAGS.out)}: {info['model']} ({tag}), "
        f"num_classes={info['num_classes']}, resize {prep['resize']} crop {prep['crop']}, "
        f"mean {prep['effective_mean']} std {prep['effective_std']}")


if __name__ == "__main__":
  cli.run(main)
