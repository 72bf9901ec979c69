"""Inception v3.

Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception Architecture for Computer
Vision", CVPR 2016 — Table 1 (the outline: a conv stem, 3 × Fig. 5 modules at 35×35, a grid
reduction (Fig. 10), 4 × Fig. 6 modules at 17×17 with factorised 1×7/7×1 convs, a reduction, 2 ×
Fig. 7 modules at 8×8 with expanded 1×3/3×1 branches), §4 (the auxiliary classifier on the last
17×17 layer) and §6 (299×299 input).

``inception_v3`` is torchvision's layout (which follows Google's released TF-slim code, not every
detail of Table 1), module names Conv2d_1a_3x3 … Mixed_5b … Mixed_7c and AuxLogits, so its
weights load: every conv is ``BasicConv2d`` (conv without bias → BatchNorm eps 1e-3 → ReLU), the
stem's and the reductions' pools are 3×3/2 without padding, the modules' pool branches are 3×3/1
average pools (padding 1, padded zeros counted), then global average pool → dropout 0.5 → fc.
27,161,264 parameters with the auxiliary head (the default, as torchvision), 23,834,568 with
``aux_logits=False`` (1000 classes).
Where the released layout differs from the paper's Table 1 / figures:
  * the stem after the first pool is 1×1 conv 80 → 3×3 conv 192 → 3×3/2 max pool, not Table 1's
    three 3×3 convs (80, 192, 288);
  * the 35×35 modules (Mixed_5*) keep a 1×1→5×5 branch beside the double 3×3 of Fig. 5;
  * the grid reductions (Mixed_6a, Mixed_7a) follow Fig. 10's idea with the released widths;
  * the auxiliary head has BatchNorm in its convs but not in its fc (§7's "BN-auxiliary" puts
    BN in the fc too); label smoothing (§7) belongs to the loss, not the model.

``aux_logits`` (default True): the auxiliary head on Mixed_6e (§4): 5×5/3 average pool
(17×17 → 5×5) → 1×1 conv 128 → 5×5 conv 768 → global average pool → fc classes, computed in
train mode only (and at init, so every parameter exists), sown as ``aux_logits``; torchvision's
recipe weights its loss by 0.4. Deviation: torchvision's head needs Mixed_6e ≥ 17×17 (inputs of
at least 299); where the map is smaller the 5×5/3 pool is replaced by an adaptive average pool to
5×5, so the head runs (and creates its parameters) down to the 75×75 minimum. At Mixed_6e ≥ 17×17
it is exactly torchvision's head.

Options: ``activation`` replaces every ReLU; ``pool`` sets the kind of the max pools between
stages (the two in the stem and the pool branches of the grid reductions Mixed_6a and
Mixed_7a); the modules' 3×3/1 average-pool branches stay. Initialisation is flax's default
(LeCun normal), not torchvision's truncated normals. ``transform_input`` (input preprocessing for
torchvision's weights) is data, not model: see ``cnnjax.transfer.tv_inception_v3.PREPROCESSING``.
Sown features: ``stem`` (after the second max pool, 192 channels), ``stage1``–``stage3`` (outputs
of Mixed_5d, Mixed_6e, Mixed_7c), ``pre_logits`` (the pooled 2,048 features) and, in train mode,
``aux_logits``.
Smallest input: 75×75 (Mixed_7a then sees 3×3 maps), as in torchvision; smaller inputs raise.
No ``drop_path``: stochastic depth (Huang et al. 2016) drops a residual branch and keeps the
shortcut, and Inception v3 has no shortcut anywhere — each module's concatenated branches are
the only path, so dropping a module (or one of its branches) per example would cut the signal
or change the channel layout rather than skip a block; timm's Inception v3 takes no drop-path
rate either. Its regularisers are the paper's: dropout before the fc and label smoothing.
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from cnnjax.models import layers
from cnnjax.models.googlenet import check_input_size
from cnnjax.models.spec import ModelSpec

PAPER = "Szegedy et al. 2016, CVPR, Table 1, Figs. 5-7 and 10"

BN_EPS = 1e-3
MIN_INPUT = 75


class _Module(layers.Options):
  """Fields shared by the mixed modules; ``conv`` builds a ``BasicConv2d`` with them."""

  pool: str = "max"

  def conv(self, name: str, features: int, kernel, strides: int = 1, padding=0):
    return layers.BasicConv2d(features, kernel, strides, padding, bn_eps=BN_EPS,
                              activation=self.activation, negative_slope=self.negative_slope,
                              dtype=self.dtype, name=name)

  def avg3(self, x):
    """The 3×3/1 average pool before a ``branch_pool`` conv (torchvision's functional one)."""
    return layers.Pool("avg", 3, 1, padding=1, name="branch_pool_avg")(x)

  def reduce(self, x):
    """The 3×3/2 pool branch of a grid reduction."""
    return layers.Pool(self.pool, 3, 2, name="branch_pool")(x)


class InceptionA(_Module):
  """35×35 module (Fig. 5 with the released 5×5 branch)."""

  pool_features: int = 32

  @nn.compact
  def __call__(self, x, train: bool = False):
    b1 = self.conv("branch1x1", 64, 1)(x, train)
    b5 = self.conv("branch5x5_1", 48, 1)(x, train)
    b5 = self.conv("branch5x5_2", 64, 5, padding=2)(b5, train)
    b3 = self.conv("branch3x3dbl_1", 64, 1)(x, train)
    b3 = self.conv("branch3x3dbl_2", 96, 3, padding=1)(b3, train)
    b3 = self.conv("branch3x3dbl_3", 96, 3, padding=1)(b3, train)
    bp = self.conv("branch_pool", self.pool_features, 1)(self.avg3(x), train)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Module):
  """35×35 → 17×17 grid reduction (Mixed_6a, Fig. 10)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    b3 = self.conv("branch3x3", 384, 3, strides=2)(x, train)
    bd = self.conv("branch3x3dbl_1", 64, 1)(x, train)
    bd = self.conv("branch3x3dbl_2", 96, 3, padding=1)(bd, train)
    bd = self.conv("branch3x3dbl_3", 96, 3, strides=2)(bd, train)
    bp = self.reduce(x)
    return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(_Module):
  """17×17 module with 7×7 convs factorised into 1×7 and 7×1 (Fig. 6, n = 7)."""

  channels_7x7: int = 128

  @nn.compact
  def __call__(self, x, train: bool = False):
    c7, row, col = self.channels_7x7, ((1, 7), (0, 3)), ((7, 1), (3, 0))
    b1 = self.conv("branch1x1", 192, 1)(x, train)
    b7 = self.conv("branch7x7_1", c7, 1)(x, train)
    b7 = self.conv("branch7x7_2", c7, row[0], padding=row[1])(b7, train)
    b7 = self.conv("branch7x7_3", 192, col[0], padding=col[1])(b7, train)
    bd = self.conv("branch7x7dbl_1", c7, 1)(x, train)
    for i, (kernel, pad) in enumerate((col, row, col), start=2):
      bd = self.conv(f"branch7x7dbl_{i}", c7, kernel, padding=pad)(bd, train)
    bd = self.conv("branch7x7dbl_5", 192, row[0], padding=row[1])(bd, train)
    bp = self.conv("branch_pool", 192, 1)(self.avg3(x), train)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Module):
  """17×17 → 8×8 grid reduction (Mixed_7a)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    b3 = self.conv("branch3x3_1", 192, 1)(x, train)
    b3 = self.conv("branch3x3_2", 320, 3, strides=2)(b3, train)
    b7 = self.conv("branch7x7x3_1", 192, 1)(x, train)
    b7 = self.conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7, train)
    b7 = self.conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7, train)
    b7 = self.conv("branch7x7x3_4", 192, 3, strides=2)(b7, train)
    bp = self.reduce(x)
    return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(_Module):
  """8×8 module with expanded filter banks: 3×3 split into parallel 1×3 and 3×1 (Fig. 7)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    def split(y, prefix: str):
      a = self.conv(f"{prefix}a", 384, (1, 3), padding=(0, 1))(y, train)
      b = self.conv(f"{prefix}b", 384, (3, 1), padding=(1, 0))(y, train)
      return jnp.concatenate([a, b], axis=-1)

    b1 = self.conv("branch1x1", 320, 1)(x, train)
    b3 = split(self.conv("branch3x3_1", 384, 1)(x, train), "branch3x3_2")
    bd = self.conv("branch3x3dbl_1", 448, 1)(x, train)
    bd = split(self.conv("branch3x3dbl_2", 384, 3, padding=1)(bd, train), "branch3x3dbl_3")
    bp = self.conv("branch_pool", 192, 1)(self.avg3(x), train)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(_Module):
  """§4 auxiliary classifier on Mixed_6e (torchvision's layout; small maps: see docstring)."""

  num_classes: int = 1000

  @nn.compact
  def __call__(self, x, train: bool = False):
    if min(x.shape[1:3]) >= 17:
      x = layers.Pool("avg", 5, 3, name="pool")(x)  # torchvision: 17×17 → 5×5
    else:
      x = layers.adaptive_avg_pool(x, (5, 5))  # deviation: lets small inputs through
    x = self.conv("conv0", 128, 1)(x, train)
    x = self.conv("conv1", 768, 5)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


# (name, module, its own fields), stage by stage: Mixed_5 (35×35), Mixed_6 (17×17), Mixed_7 (8×8).
STAGES = (
    (("Mixed_5b", InceptionA, {"pool_features": 32}),
     ("Mixed_5c", InceptionA, {"pool_features": 64}),
     ("Mixed_5d", InceptionA, {"pool_features": 64})),
    (("Mixed_6a", InceptionB, {}),
     ("Mixed_6b", InceptionC, {"channels_7x7": 128}),
     ("Mixed_6c", InceptionC, {"channels_7x7": 160}),
     ("Mixed_6d", InceptionC, {"channels_7x7": 160}),
     ("Mixed_6e", InceptionC, {"channels_7x7": 192})),
    (("Mixed_7a", InceptionD, {}),
     ("Mixed_7b", InceptionE, {}),
     ("Mixed_7c", InceptionE, {})),
)
AUX_AFTER = "Mixed_6e"


class InceptionV3(layers.Options):
  """Inception v3 in torchvision's layout (see the module docstring)."""

  num_classes: int = 1000
  aux_logits: bool = True
  pool: str = "max"
  dropout: float = 0.5

  def _common(self) -> dict[str, Any]:
    return dict(activation=self.activation, negative_slope=self.negative_slope, pool=self.pool,
                dtype=self.dtype)

  def _stem(self, x, train: bool):
    conv = functools.partial(layers.BasicConv2d, bn_eps=BN_EPS, activation=self.activation,
                             negative_slope=self.negative_slope, dtype=self.dtype)
    x = conv(32, 3, strides=2, name="Conv2d_1a_3x3")(x, train)
    x = conv(32, 3, name="Conv2d_2a_3x3")(x, train)
    x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x, train)
    x = layers.Pool(self.pool, 3, 2, name="maxpool1")(x)
    x = conv(80, 1, name="Conv2d_3b_1x1")(x, train)
    x = conv(192, 3, name="Conv2d_4a_3x3")(x, train)
    return layers.Pool(self.pool, 3, 2, name="maxpool2")(x)

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_input_size(x, MIN_INPUT, "inception_v3")
    x = self._stem(x.astype(self.dtype), train)
    self.sow("intermediates", "stem", x)
    for i, stage in enumerate(STAGES):
      for name, module, fields in stage:
        x = module(**self._common(), **fields, name=name)(x, train)
        if name == AUX_AFTER and self.aux_logits and (train or self.is_initializing()):
          aux = InceptionAux(**self._common(), num_classes=self.num_classes,
                             name="AuxLogits")(x, train)
          if train:
            self.sow("intermediates", "aux_logits", aux)
      self.sow("intermediates", f"stage{i + 1}", x)
    x = jnp.mean(x, axis=(1, 2))
    self.sow("intermediates", "pre_logits", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


SPECS = (
    ModelSpec("inception_v3", InceptionV3, input_size=299, min_input_size=MIN_INPUT,
              aux_loss_weight=0.4, paper=PAPER),
)
