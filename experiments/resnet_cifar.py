"""CIFAR ResNets on CIFAR-10 (He et al. 2016, §4.2): SGD, batch 128, momentum 0.9, weight decay
1e-4, learning rate 0.1 divided by 10 at 32k and 48k iterations, stop at 64k (here epochs 82, 123
and 164 of 391 steps), 4-pixel shifts and flips; resnet110 warms up for the first epoch (the paper:
0.01 until training error is below 80%). ``:resnet56`` (default), ``:resnet20`` ... ``:resnet110``.
Needs ``python -m cnnjax.data cifar10`` once."""

from experiments import zoo

MODELS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


def get_config(arg=None):
  model, flags = zoo.parse(arg, "resnet56", MODELS)
  c = zoo.base_config()
  c.model_options.original = None
  c.model_options.shortcut = zoo.base.none(str)  # A (default, the paper's) | B
  c.dataset = "cifar10"
  c.data.max_shift, c.data.flip = 4, True
  c.batch_size, c.num_epochs = 128, 164.0
  c.optimizer.update(name="momentum", learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
  c.schedule.update(name="step", decay_epochs=(82, 123), decay_factor=0.1,
                    warmup_epochs=1.0 if model == "resnet110" else 0.0)
  c.checkpoint_every_steps = 2000
  return zoo.finish(c, model, flags, original_ok=False)
