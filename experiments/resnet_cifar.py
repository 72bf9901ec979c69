"""CIFAR ResNets on CIFAR-10 (He et al. 2016, §4.2): SGD, batch 128, momentum 0.9, weight decay
1e-4, learning rate 0.1 divided by 10 at 32k and 48k iterations, stop at 64k (here epochs 82, 123
and 164 of 391 steps), 4-pixel shifts and flips; resnet110 warms up for the first epoch (the paper:
0.01 until training error is below 80%). ``:resnet56`` (default), ``:resnet20`` ... ``:resnet110``.
Needs ``python -m cnnjax.data cifar10`` once.

``:modern`` (``:resnet20,modern``, ``:modern,smoke``, ...) adds the parts in ``MODERN`` to the
same network, optimiser, batch and 164 epochs. Source: timm's "ResNet strikes back" A2 recipe
(Wightman, Touvron and Jégou 2021, Table 1: mixup 0.1, CutMix 1.0, RandAugment m7 with magnitude
std 0.5, stochastic depth 0.05, cosine schedule with 5 warm-up epochs), adapted to CIFAR:
  * the optimiser stays He et al.'s SGD at batch 128 (A2's LAMB at batch 2,048 is a large-batch
    ImageNet choice), and the epochs stay 164, so the recipe and the baseline differ only by the
    parts below (``experiments/ablations.py:recipe`` switches each on alone);
  * cross-entropy with label smoothing 0.1 instead of A2's binary cross-entropy (cnnjax has one
    loss; timm's own default recipe smooths by 0.1);
  * EMA of the weights (0.999 with warm-up), which A2 does not use: on CIFAR's 391 steps per epoch
    it averages over about 2.5 epochs, the decay of FixMatch's CIFAR runs (Sohn et al. 2020);
  * RandAugment at 2 ops of magnitude 21 ± 1.5 on cnnjax's 0..30 scale (timm's m7-mstd0.5), on
    top of the shifts and flips; no repeated augmentation (A2's, not a cnnjax part).
"""

from cnnjax import config as config_lib
from experiments import zoo

MODELS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]

# The :modern recipe's parts, each a set of config overrides on He et al.'s config.
MODERN = {
    "label_smoothing": {"label_smoothing": 0.1},
    "mixup": {"mixup.alpha": 0.1},
    "cutmix": {"cutmix.alpha": 1.0},
    "randaugment": {"randaugment.num_ops": 2, "randaugment.magnitude": 21.0,
                    "randaugment.magnitude_std": 1.5},
    "ema": {"ema.decay": 0.999, "ema.warmup": True},
    "drop_path": {"model_options.drop_path": 0.05},
    "cosine": {"schedule.name": "cosine", "schedule.decay_epochs": (),
               "schedule.warmup_epochs": 5.0},
}


def get_config(arg=None):
  words = (arg or "").split(",")
  modern = "modern" in words
  model, flags = zoo.parse(",".join(w for w in words if w != "modern") or None, "resnet56",
                           MODELS)
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
  if modern:
    c = config_lib.with_values(c, {k: v for part in MODERN.values() for k, v in part.items()})
  return zoo.finish(c, model, flags, original_ok=False)
