"""A tiny sweep for the tests: LeNet-5, a few dozen steps, relu vs gelu over 2 seeds.

Arguments: nothing (the main sweep), ``fail`` (one point that diverges), ``one`` (one variant),
``typo`` (a misspelt key), ``badvalue`` (a value a single run refuses), ``more`` (a third point).
"""

from cnnjax.sweep import Sweep
from experiments import lenet_mnist


def get_config(arg=None):
  del arg
  c = lenet_mnist.get_config()
  c.num_steps = 40
  c.batch_size = 64
  c.log_every_steps, c.checkpoint_every_steps, c.eval_every_epochs = 10, 10, 0.0
  c.data.max_shift = 0
  c.eval_batch_size = 500
  return c


def get_sweep(arg=None):
  axes = {
      None: {"model_options.activation": ["relu", "gelu"]},
      "more": {"model_options.activation": ["relu", "gelu", "elu"]},
      "one": {"model_options.activation": ["elu"]},
      "fail": {"optimizer.learning_rate": [1e9]},
      "typo": {"model_options.activaton": ["relu"]},
      "badvalue": {"model_options.dropout": [0.5, 1.5]},
  }[arg]
  return Sweep(axes, seeds=(0,) if arg == "fail" else (0, 1))
