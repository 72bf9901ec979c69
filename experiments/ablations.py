"""The course's ablation studies, one sweep each: ``--config=experiments/ablations.py:NAME[,smoke]``.

  python launch.py --config=experiments/ablations.py:activation --workdir=runs/activation --sweep
  python launch.py --config=experiments/ablations.py:activation,smoke --workdir=/tmp/a --sweep \
      --sweep_workers=2

NAME (the base config is the first variant, the baseline):
  activation      LeNet-5 on mnist5k with relu, leaky_relu (slope 0.01, the course's), elu, gelu
  pooling         LeNet-5, max vs average pooling
  dropout         LeNet-5, dropout 0, 0.25, 0.5 after fc1 and fc2
  batchnorm       LeNet-5 without and with BatchNorm before each hidden activation
  depth_residual  CIFAR ResNet-20/32/44/56 against plain nets of the same depth on cifar10
                  (He et al. 2016, Fig. 6; needs ``python -m cnnjax.data cifar10``)
  head            VGG-11 (BN) with its fully connected head vs global average pooling, cifar10
                  (the course's VGG table: the FC layers hold most of VGG's parameters)
  recipe          ResNet-20 on cifar10 by He et al.'s recipe, then each part of the modern
                  recipe (experiments/resnet_cifar.py:modern) switched on alone, then all of
                  them; ``ema`` trains as the baseline does: compare its eval_ema/top1
                  (summary.csv) with the baseline's eval/top1

Full forms train as the single-run experiments do (LeNet-5: experiments/lenet_mnist.py, 30
epochs; ResNets: experiments/resnet_cifar.py); 5 seeds. ``smoke`` is a short version of the same
comparison on the embedded MNIST, with 2 seeds: a quick end-to-end check of the sweep's
machinery, not a result (its timings: docs/performance.md).
``get_config`` alone is the baseline as a single run.
"""

from cnnjax.sweep import Sweep, product, variants
from experiments import base, lenet_mnist, resnet_cifar, zoo

NAMES = ("activation", "pooling", "dropout", "batchnorm", "depth_residual", "head", "recipe")
SEEDS, SMOKE_SEEDS = (0, 1, 2, 3, 4), (0, 1)
RESNET_DEPTHS = (20, 32, 44, 56)


def _parse(arg):
  words = [w for w in (arg or "").split(",") if w]
  if not words or words[0] not in NAMES or set(words[1:]) - {"smoke"}:
    raise ValueError(f"unknown ablation {arg!r}: use NAME[,smoke] with NAME in "
                     f"{', '.join(NAMES)}")
  return words[0], "smoke" in words[1:]


def _lenet(smoke):
  c = lenet_mnist.get_config()
  c.model_options.batch_norm = base.none(bool)
  if smoke:  # 2 epochs of the real schedule, one evaluation at the end
    c.num_epochs = 2.0
    c.log_every_steps, c.eval_every_epochs = 7, 0.0
    c.checkpoint_every_steps = 63
  return c


def _resnet(smoke):
  c = resnet_cifar.get_config("resnet20")
  c.model_options.residual = base.none(bool)
  if smoke:  # the embedded MNIST at 28×28, a few hundred images
    c.dataset = "mnist5k"
    c.data.flip, c.data.max_shift = False, 0
    c.data.train_split, c.data.eval_split = "train[:512]", "test[:256]"
    c.batch_size, c.eval_batch_size, c.num_epochs = 64, 256, 2.0
    c.optimizer.learning_rate, c.optimizer.weight_decay = 0.05, 0.0
    c.schedule.update(name="cosine", decay_epochs=(), warmup_epochs=0.0)
    c.log_every_steps, c.eval_every_epochs, c.checkpoint_every_steps = 4, 0.0, 16
  return c


def _vgg(smoke):
  c = zoo.base_config()
  c.model, c.model_options.original = "vgg11_bn", None
  c.model_options.head = base.none(str)
  c.dataset = "cifar10"
  c.data.max_shift, c.data.flip = 4, True
  c.batch_size, c.num_epochs = 128, 30.0
  c.optimizer.update(name="momentum", learning_rate=0.05, momentum=0.9, weight_decay=5e-4)
  c.schedule.update(name="cosine", warmup_epochs=1.0)
  c.checkpoint_every_steps = 2000
  if smoke:  # 32×32 grey digits tiled to 3 channels; a few steps
    c.dataset = "mnist5k"
    c.data.max_shift, c.data.flip, c.data.image_size = 0, False, 32
    c.data.train_split, c.data.eval_split = "train[:256]", "test[:128]"
    c.batch_size, c.eval_batch_size, c.num_epochs = 32, 128, 1.0
    c.optimizer.update(name="adam", learning_rate=1e-3, weight_decay=0.0)
    c.schedule.update(name="constant", warmup_epochs=0.0)
    c.log_every_steps, c.eval_every_epochs, c.checkpoint_every_steps = 4, 0.0, 8
  return c


def _recipe(smoke):
  c = _resnet(smoke)
  if smoke:  # 16×16 digits; the step schedule kept, so that "cosine" changes something
    c.data.image_size = 16
    c.schedule.update(name="step", decay_epochs=(1.0, 1.5))
  return c


def get_config(arg=None):
  name, smoke = _parse(arg)
  build = {"depth_residual": _resnet, "head": _vgg, "recipe": _recipe}.get(name, _lenet)
  return build(smoke)


def get_sweep(arg=None):
  name, smoke = _parse(arg)
  seeds = SMOKE_SEEDS if smoke else SEEDS
  axes = {
      "activation": {"model_options.activation": ["relu", "leaky_relu", "elu", "gelu"]},
      "pooling": {"model_options.pool": ["max", "avg"]},
      "dropout": {"model_options.dropout": [0.0, 0.25, 0.5]},
      "batchnorm": {"model_options.batch_norm": [False, True]},
      "head": {"model_options.head": ["fc", "gap"]},
  }.get(name)
  if name == "depth_residual":
    depths = RESNET_DEPTHS[:1] if smoke else RESNET_DEPTHS
    axes = variants({f"{kind}{d}": {"model": f"resnet{d}", "model_options.residual": kind == "resnet"}
                     for d in depths for kind in ("resnet", "plain")})
  if name == "recipe":
    parts = dict(resnet_cifar.MODERN)
    if smoke:  # 5 warm-up epochs would outlast the 2 of the smoke runs
      parts["cosine"] = {**parts["cosine"], "schedule.warmup_epochs": 0.25}
    every = {k: v for part in parts.values() for k, v in part.items()}
    axes = variants({"he2016": {}, **parts, "all": every})
  return Sweep(axes, seeds=seeds, metric="eval/top1")
