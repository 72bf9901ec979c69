"""GoogLeNet (Inception v1).

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 — Table 1 (the layers and the
widths of every inception module), Fig. 2b (the module: 1×1, 1×1→3×3, 1×1→5×5 and 3×3 max
pool→1×1 branches concatenated along channels) and Fig. 3 / §5 (the whole network with its two
auxiliary classifiers).

``googlenet`` is torchvision's form, so its weights load: every conv is ``BasicConv2d`` (conv
without bias → BatchNorm eps 1e-3 → ReLU); the max pools use ``ceil_mode=True``; the pool before
inception (5a) is 2×2/2; global average pooling, dropout 0.2 (option ``dropout``) and the fc
layer. 6,624,904 parameters (1000 classes).
Deviations from the paper (torchvision's, kept so its weights load and its numbers reproduce):
  * the "5×5" branch uses a 3×3 conv (a known torchvision bug, kept for weight compatibility);
  * BatchNorm after every conv (the paper predates BN) and no LRN;
  * the pool before (5a) is 2×2/2 rather than 3×3/2 (same 7×7 output at 224);
  * dropout 0.2 rather than the paper's 0.4;
  * the auxiliary heads average-pool adaptively to 4×4 (torchvision) instead of the paper's
    5×5/3 pool — both give 4×4 at 224, from different windows.

``aux_logits=True`` adds the two auxiliary classifiers on (4a) and (4d) (§5): average pool →
1×1 conv 128 (``BasicConv2d``) → fc 1024 → ReLU → dropout 0.7 (``aux_dropout``) → fc classes,
computed in train mode only (and at init, so every parameter exists) and sown as ``aux_logits``
(aux1 then aux2); the paper weights each aux loss by 0.3. 13,004,888 parameters (1000 classes).
torchvision's ``googlenet(aux_logits=True)`` is the same network; its ported ImageNet weights
ship untrained aux heads.

``original=True`` gives the paper's network (Table 1, Fig. 3): convs with biases and no
BatchNorm; the "5×5" branch really is 5×5; LocalRespNorm (size 5, α 1e-4, β 0.75, k 1, Caffe's
values) after max pool 1 and after conv 3×3 (2); 3×3/2 max pool before (5a); dropout 0.4
unless ``dropout`` is set to another value than its default; the auxiliary heads use the
paper's 5×5/3 average pool (then an adaptive 4×4 pool, the identity at 224, so smaller inputs
still give 2,048 fc inputs). 6,998,552 parameters (1000 classes); 13,378,280 with the aux heads.

Both forms: ``activation`` replaces every ReLU; ``pool`` sets the kind of the four max pools
between the stem and the stages (the 3×3/1 pool branch inside the modules stays a max pool).
Initialisation is flax's default (LeCun normal), not torchvision's truncated normal (0.01).
Input preprocessing for torchvision's weights (``transform_input``) is data, not model: see
``cnnjax.transfer.tv_googlenet.PREPROCESSING``.
Sown features: ``stem`` (after max pool 2, 192 channels), ``stage1``–``stage3`` (outputs of
(3b), (4e), (5b)), ``pre_logits`` (the pooled 1,024 features) and, in train mode, ``aux_logits``.
Smallest input: 15×15 (the (3a) stage sees 2×2 maps, (5b) 1×1), as in torchvision; 31×31 with
``original=True`` (its 3×3/2 pool before (5a) needs 2×2 maps). Smaller inputs raise.
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import UserError
from cnnjax.models import layers
from cnnjax.models.spec import ModelSpec

PAPER = "Szegedy et al. 2015, CVPR, Table 1, Fig. 2b and Fig. 3"

TORCHVISION_DROPOUT = 0.2
PAPER_DROPOUT = 0.4  # §5: "dropout layer with 40% ratio of dropped outputs"

# Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj.
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))
AUX_AFTER = ("4a", "4d")  # §5: the auxiliary classifiers read (4a) and (4d)
MIN_INPUT = 15  # (3a) sees 2×2 maps, (5b) 1×1
MIN_INPUT_ORIGINAL = 31  # the 3×3/2 pool before (5a) needs 2×2 maps


def check_input_size(x, smallest: int, model: str) -> None:
  """Smaller inputs would shrink a map to 0×0 and give NaN logits silently; fail instead."""
  if min(x.shape[1:3]) < smallest:
    raise UserError(f"{model} needs inputs of at least {smallest}×{smallest}, "
                    f"got {x.shape[1]}×{x.shape[2]}.")


class Inception(nn.Module):
  """Fig. 2b: four branches concatenated along channels (names follow torchvision)."""

  widths: tuple[int, int, int, int, int, int]
  kernel5: int = 3  # torchvision's "5×5" branch is 3×3; the paper's is 5
  use_bn: bool = True
  activation: str = "relu"
  negative_slope: float = layers.DEFAULT_NEGATIVE_SLOPE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c1, c3r, c3, c5r, c5, cp = self.widths
    conv = functools.partial(layers.BasicConv2d, use_bn=self.use_bn, activation=self.activation,
                             negative_slope=self.negative_slope, dtype=self.dtype)
    b1 = conv(c1, 1, name="branch1")(x, train)
    b2 = conv(c3r, 1, name="branch2_0")(x, train)
    b2 = conv(c3, 3, padding=1, name="branch2_1")(b2, train)
    b3 = conv(c5r, 1, name="branch3_0")(x, train)
    b3 = conv(c5, self.kernel5, padding=self.kernel5 // 2, name="branch3_1")(b3, train)
    b4 = layers.Pool("max", 3, 1, padding=1, ceil_mode=True, name="branch4_0")(x)
    b4 = conv(cp, 1, name="branch4_1")(b4, train)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class GoogLeNetAux(nn.Module):
  """§5 auxiliary classifier: avg pool → 1×1 conv 128 → fc 1024 → act → dropout → fc."""

  num_classes: int
  original: bool = False
  dropout: float = 0.7
  activation: str = "relu"
  negative_slope: float = layers.DEFAULT_NEGATIVE_SLOPE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.original and min(x.shape[1:3]) >= 5:
      x = layers.Pool("avg", 5, 3, name="pool")(x)  # the paper's 5×5/3: 14×14 → 4×4
    x = layers.adaptive_avg_pool(x, (4, 4))  # torchvision's
    x = layers.BasicConv2d(128, 1, use_bn=not self.original, activation=self.activation,
                           negative_slope=self.negative_slope, dtype=self.dtype,
                           name="conv")(x, train)
    x = x.reshape(x.shape[0], -1)
    act = layers.activation(self.activation, self.negative_slope)
    x = act(nn.Dense(1024, dtype=self.dtype, name="fc1")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc2")(x).astype(jnp.float32)


class GoogLeNet(layers.Options):
  """GoogLeNet (see the module docstring for the torchvision and the paper's form)."""

  num_classes: int = 1000
  aux_logits: bool = False
  original: bool = False
  pool: str = "max"
  dropout: float = TORCHVISION_DROPOUT
  aux_dropout: float = 0.7

  def _conv(self):
    return functools.partial(layers.BasicConv2d, use_bn=not self.original,
                             activation=self.activation, negative_slope=self.negative_slope,
                             dtype=self.dtype)

  def _pool(self, window: int, name: str):
    return layers.Pool(self.pool, window, 2, ceil_mode=True, name=name)

  def _stem(self, x, train: bool):
    conv = self._conv()
    lrn = functools.partial(layers.local_response_norm, size=5, alpha=1e-4, beta=0.75, k=1.0)
    x = conv(64, 7, strides=2, padding=3, name="conv1")(x, train)
    x = self._pool(3, "pool1")(x)
    x = lrn(x) if self.original else x
    x = conv(64, 1, name="conv2")(x, train)
    x = conv(192, 3, padding=1, name="conv3")(x, train)
    x = lrn(x) if self.original else x
    return self._pool(3, "pool2")(x)

  def _aux(self, x, index: int, train: bool):
    head = GoogLeNetAux(self.num_classes, self.original, self.aux_dropout, self.activation,
                        self.negative_slope, self.dtype, name=f"aux{index}")
    logits = head(x, train)
    if train:
      self.sow("intermediates", "aux_logits", logits)

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_input_size(x, MIN_INPUT_ORIGINAL if self.original else MIN_INPUT, "googlenet")
    x = self._stem(x.astype(self.dtype), train)
    self.sow("intermediates", "stem", x)
    with_aux = self.aux_logits and (train or self.is_initializing())
    for i, stage in enumerate(STAGES):
      if i == 1:
        x = self._pool(3, "pool3")(x)
      elif i == 2:  # Table 1: 3×3/2; torchvision: 2×2/2 (both 7×7 at 224)
        x = self._pool(3 if self.original else 2, "pool4")(x)
      for name in stage:
        x = Inception(MODULES[name], 5 if self.original else 3, not self.original,
                      self.activation, self.negative_slope, self.dtype,
                      name=f"inception{name}")(x, train)
        if with_aux and name in AUX_AFTER:
          self._aux(x, AUX_AFTER.index(name) + 1, train)
      self.sow("intermediates", f"stage{i + 1}", x)
    x = jnp.mean(x, axis=(1, 2))
    self.sow("intermediates", "pre_logits", x)
    rate = PAPER_DROPOUT if self.original and self.dropout == TORCHVISION_DROPOUT else self.dropout
    x = nn.Dropout(rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


SPECS = (
    ModelSpec("googlenet", GoogLeNet, input_size=224, min_input_size=MIN_INPUT,
              aux_loss_weight=0.3, paper=PAPER),
)
