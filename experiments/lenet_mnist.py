"""LeNet-5 (modern form, 61,706 parameters) on the embedded 5,000-image MNIST, offline.

python launch.py --config=experiments/lenet_mnist.py --workdir=runs/lenet
Variants: ``:original`` trains the 1998 form (scaled tanh, trainable subsampling, C3 table, RBF).
"""

from experiments import base


def get_config(arg=None):
  if arg not in (None, "original"):
    raise ValueError(f"unknown experiment argument {arg!r}: use nothing or 'original'")
  c = base.get_config()
  c.model = "lenet5"
  c.model_options.original = base.none(bool)  # True: the 1998 form
  if arg == "original":
    c.model_options.original = True
  c.dataset = "mnist5k"
  c.data.max_shift = 2
  c.batch_size = 128
  c.num_epochs = 30.0
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 1.0
  c.checkpoint_every_steps = 200
  c.steps_per_call = 8  # a short step: per-step host work would be a large share of it
  # (measured in docs/performance.md, "The training loop against the harness")
  return c
