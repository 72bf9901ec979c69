"""ResNet: residual networks for ImageNet and for CIFAR-10.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016 — Table 1 (the
ImageNet networks), Fig. 2 (the basic block), Fig. 5 (the bottleneck block), §3.3 (shortcut
options A/B) and §4.2 (the CIFAR-10 networks).

``resnet18 | 34 | 50 | 101 | 152`` (``ResNet``) follow Table 1 and torchvision: a 7×7/2 conv of 64
with BatchNorm and ReLU, a 3×3/2 max pool (padding 1), four stages of basic (18, 34) or bottleneck
(50, 101, 152; expansion 4) blocks with widths 64/128/256/512, the first block of stages 2–4
halving the resolution, then global average pooling and the classifier. Shortcuts are identities,
or a 1×1 conv + BatchNorm projection where the shape changes (option B of §3.3). Parameters:
11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808 (1000 classes).

``resnet20 | 32 | 44 | 56 | 110`` (``CifarResNet``) follow §4.2: a 3×3 conv of 16, three stages of
n = (depth − 2) / 6 basic blocks with 16/32/64 filters on 32×32/16×16/8×8 maps, global average
pooling and a 10-way classifier. ``shortcut='A'`` (default, the paper's CIFAR choice) is
parameter-free: the input subsampled with stride 2 and zero-padded with the extra channels;
``shortcut='B'`` projects with a 1×1 conv + BatchNorm where the shape changes.
Parameters, option A: 269,722 / 464,154 / 658,586 / 853,018 / 1,727,962; option B adds the two
projections (16→32: 576, 32→64: 2,176), 2,752 more: 272,474 / 466,906 / 661,338 / 855,770 /
1,730,714. ``residual=False`` gives the plain networks of Fig. 6 (the same layers without any
shortcut; with option A the same parameter counts, with B the projections are dropped too).

Deviations, from the paper and from torchvision:
  * Stride placement (bottleneck only): by default the stride sits in the 3×3 conv, as in
    torchvision ("ResNet v1.5", the layout of its weights); ``original=True`` puts it in the
    first 1×1 conv as the paper does (v1). Same parameter count; basic blocks are unaffected.
  * Initialisation: convs use He normal with fan-out (torchvision; the paper's [13], He et al.
    2015, uses fan-in); the classifier keeps flax's default (LeCun normal, zero bias;
    torchvision: uniform).
  * ``zero_init_residual`` (not in the paper; Goyal et al. 2017, torchvision's option) starts
    each block's last BatchNorm scale at zero, so every block starts as its shortcut.
  * Option A pads the new channels after the old ones (the paper does not say where; some
    reimplementations split the padding on both sides — an equivalent relabelling of channels).
  * ``activation`` and ``pool`` (the stem's max pool; ``avg`` counts the padding, like PyTorch's
    default) are the course's options; ReLU and max pooling are the paper's.
  * ``drop_path`` (not in the paper; default 0): stochastic depth, Huang et al. 2016, "Deep
    Networks with Stochastic Depth", ECCV, §3 and Eq. 4 — in training each block's residual
    branch (after its last BatchNorm, before the sum) is dropped per example, block l of L with
    probability l/L · drop_path, and the kept ones scaled by 1/(1 − that); the identity at
    evaluation (``layers.DropPath``). Huang et al. scale at test time instead: the same
    expectation. No parameters, so the counts above hold.

Intermediates: ``stem`` after the stem (after the max pool for the ImageNet networks),
``stageN`` after each stage, ``pre_logits`` after global pooling. Any input of at least 1×1
works (each stride-2 layer maps s to ⌈s/2⌉; torchvision's ``min_size`` is also 1×1). The
registry pins ``block``, ``depths`` and ``widths`` per name (the tables at the end).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import UserError, unknown
from cnnjax.models import layers
from cnnjax.models.spec import ModelSpec

PAPER = "He et al. 2016, Deep Residual Learning for Image Recognition, CVPR, Table 1"
CIFAR_PAPER = "He et al. 2016, Deep Residual Learning for Image Recognition, CVPR, §4.2"

SHORTCUTS = ("A", "B")


def _conv(features: int, kernel: int, strides: int, dtype: Any, name: str) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), (strides, strides),
                 padding=layers.conv_padding(kernel // 2), use_bias=False,
                 kernel_init=layers.CONV_INIT, dtype=dtype, name=name)


def _bn(train: bool, dtype: Any, name: str, zero: bool = False) -> nn.BatchNorm:
  return layers.batch_norm(train, dtype, name, zero_scale=zero)


def shortcut_a(x, features: int, strides: int):
  """Option A (§3.3): identity, subsampled by ``strides``, new channels zero-padded at the end."""
  if strides > 1:
    x = x[:, ::strides, ::strides, :]
  extra = features - x.shape[-1]
  return jnp.pad(x, [(0, 0), (0, 0), (0, 0), (0, extra)]) if extra else x


class _Block(nn.Module):
  """Shared fields and the shortcut of the two residual blocks."""

  features: int            # the block's width; the output has features * expansion channels
  strides: int = 1
  act: Callable = nn.relu
  shortcut: str = "B"      # used only where the shape changes
  zero_init_residual: bool = False
  original: bool = False   # bottleneck: stride in the first 1×1 conv (v1) instead of the 3×3
  residual: bool = True    # False: the plain block of Fig. 6 (no shortcut at all)
  drop_rate: float = 0.0   # stochastic depth: the probability of dropping the residual branch
  dtype: Any = jnp.float32

  expansion = 1

  def _shortcut(self, x, train: bool):
    if not self.residual:
      return 0.0
    out = self.features * self.expansion
    if self.strides == 1 and x.shape[-1] == out:
      return x
    if self.shortcut == "A":
      return shortcut_a(x, out, self.strides)
    x = _conv(out, 1, self.strides, self.dtype, "downsample_0")(x)
    return _bn(train, self.dtype, "downsample_1")(x)

  def _drop(self, y, train: bool):
    if not self.drop_rate:
      return y
    return layers.DropPath(self.drop_rate, name="drop_path")(y, train)


class BasicBlock(_Block):
  """Fig. 2 / Fig. 5 left: two 3×3 convs, each with BatchNorm; activation after the sum."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = _conv(self.features, 3, self.strides, self.dtype, "conv1")(x)
    y = self.act(_bn(train, self.dtype, "bn1")(y))
    y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
    y = _bn(train, self.dtype, "bn2", zero=self.zero_init_residual)(y)
    return self.act(self._drop(y, train) + self._shortcut(x, train))


class Bottleneck(_Block):
  """Fig. 5 right: 1×1 reduce, 3×3, 1×1 expand (×4), each with BatchNorm."""

  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool = False):
    s1, s2 = (self.strides, 1) if self.original else (1, self.strides)
    y = _conv(self.features, 1, s1, self.dtype, "conv1")(x)
    y = self.act(_bn(train, self.dtype, "bn1")(y))
    y = _conv(self.features, 3, s2, self.dtype, "conv2")(y)
    y = self.act(_bn(train, self.dtype, "bn2")(y))
    y = _conv(self.features * 4, 1, 1, self.dtype, "conv3")(y)
    y = _bn(train, self.dtype, "bn3", zero=self.zero_init_residual)(y)
    return self.act(self._drop(y, train) + self._shortcut(x, train))


BLOCKS: dict[str, type[_Block]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _stages(model: nn.Module, x, train: bool, act: Callable, **block_opts):
  """The residual stages, named like torchvision (``layer1_0`` = ``layer1.0``); sows stageN.

  Stage 1 keeps the resolution, every later stage halves it in its first block.
  """
  if model.block not in BLOCKS:
    raise unknown("residual block", model.block, BLOCKS)
  if len(model.depths) != len(model.widths):
    raise UserError(f"depths {model.depths} and widths {model.widths} differ in length.")
  if model.drop_path and not block_opts.get("residual", True):
    raise UserError(f"drop_path={model.drop_path} needs residual blocks: a plain network "
                    "(residual=False) has no shortcut to keep when a block is dropped.")
  block = BLOCKS[model.block]
  rates = iter(layers.drop_path_rates(model.drop_path, sum(model.depths)))
  for i, (depth, width) in enumerate(zip(model.depths, model.widths), start=1):
    for j in range(depth):
      strides = 2 if i > 1 and j == 0 else 1
      x = block(width, strides, act, zero_init_residual=model.zero_init_residual,
                drop_rate=next(rates), dtype=model.dtype, name=f"layer{i}_{j}",
                **block_opts)(x, train)
    model.sow("intermediates", f"stage{i}", x)
  return x


def _head(model: nn.Module, x):
  x = jnp.mean(x, axis=(1, 2))
  model.sow("intermediates", "pre_logits", x)
  return nn.Dense(model.num_classes, dtype=model.dtype, name="fc")(x).astype(jnp.float32)


class ResNet(layers.Options):
  """The ImageNet ResNets of Table 1 (see the module docstring)."""

  num_classes: int = 1000
  block: str = "basic"
  depths: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (64, 128, 256, 512)
  original: bool = False
  zero_init_residual: bool = False
  pool: str = "max"
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = self.act()
    x = _conv(64, 7, 2, self.dtype, "conv1")(x.astype(self.dtype))
    x = act(_bn(train, self.dtype, "bn1")(x))
    x = layers.Pool(self.pool, 3, 2, padding=1, name="maxpool")(x)
    self.sow("intermediates", "stem", x)
    x = _stages(self, x, train, act, shortcut="B", original=self.original)
    return _head(self, x)


class CifarResNet(layers.Options):
  """The CIFAR-10 ResNets of §4.2 (see the module docstring)."""

  num_classes: int = 10
  block: str = "basic"
  depths: Sequence[int] = (3, 3, 3)
  widths: Sequence[int] = (16, 32, 64)
  shortcut: str = "A"
  residual: bool = True
  zero_init_residual: bool = False
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.shortcut not in SHORTCUTS:
      raise unknown("shortcut option", self.shortcut, SHORTCUTS)
    act = self.act()
    x = _conv(self.widths[0], 3, 1, self.dtype, "conv1")(x.astype(self.dtype))
    x = act(_bn(train, self.dtype, "bn1")(x))
    self.sow("intermediates", "stem", x)
    x = _stages(self, x, train, act, shortcut=self.shortcut, residual=self.residual)
    return _head(self, x)


# Table 1: name -> (block kind, blocks per stage); widths 64/128/256/512 for all.
IMAGENET_TABLE = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)

# §4.2: depth 6n + 2, n basic blocks per stage; widths 16/32/64.
CIFAR_DEPTHS = (20, 32, 44, 56, 110)
CIFAR_WIDTHS = (16, 32, 64)

SPECS = (
    *(ModelSpec(name, ResNet, fixed=dict(block=block, depths=depths, widths=IMAGENET_WIDTHS),
                input_size=224, min_input_size=1, paper=PAPER)
      for name, (block, depths) in IMAGENET_TABLE.items()),
    *(ModelSpec(f"resnet{d}", CifarResNet,
                fixed=dict(block="basic", depths=((d - 2) // 6,) * 3, widths=CIFAR_WIDTHS),
                input_size=32, min_input_size=1, num_classes=10, paper=CIFAR_PAPER)
      for d in CIFAR_DEPTHS),
)
