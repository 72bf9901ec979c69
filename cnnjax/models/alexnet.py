"""AlexNet.

Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NeurIPS 2012 — §3 and Fig. 2 (the two-tower architecture), §3.3 (local response
normalisation), §3.4 (overlapping pooling), §4.2 (dropout).

``alexnet`` is torchvision's single-tower form ("One weird trick", Krizhevsky 2014): convs
64@11×11/4 (padding 2), 192@5×5 (2), 384, 256, 256 @3×3 (1), ReLU, 3×3/2 max pools after conv1,
conv2 and conv5, adaptive average pooling to 6×6, then dropout 0.5 → fc6 4096 → ReLU → dropout →
fc7 4096 → ReLU → fc8: 61,100,840 parameters (1000 classes), torchvision's exact layers.

``original=True`` gives the 2012 network:
  * 96/256/384/384/256 filters; conv2, conv4 and conv5 are grouped in 2 (each tower sees only
    its own half of the previous layer, Fig. 2); conv3 and the dense layers connect across the
    towers, so they are ordinary layers;
  * local response normalisation after the ReLU of conv1 and conv2 (n=5, α=1e-4, β=0.75, k=2,
    §3.3), then overlapping 3×3/2 max pooling (§3.4);
  * dropout 0.5 on the outputs of fc6 and fc7 (§4.2) rather than torchvision's inputs of fc6
    and fc7.
  Padding: the paper's 224×224 input gives its 55×55 conv1 maps with 2 pixels of padding, as
  torchvision pads (floor((224 + 4 − 11) / 4) + 1 = 55; the often-quoted alternative is a
  227×227 input without padding);
  conv2 pads 2 and conv3–5 pad 1 ("same"), so the maps are 55 → 27 → 27 → 13 → 13 → 6 and fc6
  reads 6×6×256 = 9,216 features. Parameters: convs 34,944 + 307,456 + 885,120 + 663,936 +
  442,624 = 2,334,080; dense 37,752,832 + 16,781,312 + 4,097,000; total 60,965,224.

Deviations, both forms: the adaptive 6×6 average pool (torchvision's) is kept in the original
form too — it is the identity at 224×224 and lets smaller inputs through (smallest: 63×63);
initialisation is flax's default (LeCun normal, zero biases), not the paper's N(0, 0.01) with
unit biases in conv2, conv4, conv5 and the dense layers; the paper's training-time PCA colour
augmentation belongs to the data pipeline.

The convolutional trunk and the classifier are shared with ZFNet (``zfnet.py``): AlexNet in one
tower with a 7×7/2 first layer and a strided conv2.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from flax import linen as nn

from cnnjax.models import layers
from cnnjax.models.spec import ModelSpec

PAPER = "Krizhevsky, Sutskever & Hinton 2012, NeurIPS, Fig. 2 and §3"


class ConvLayer(NamedTuple):
  """One conv layer of an AlexNet-style trunk; ``lrn`` and ``pool`` follow its activation."""

  name: str
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  groups: int = 1
  lrn: bool = False
  pool: str | None = None  # name of the 3×3/2 pool after this layer, if any


# torchvision's single-tower AlexNet.
TORCHVISION = (
    ConvLayer("conv1", 64, 11, 4, 2, pool="pool1"),
    ConvLayer("conv2", 192, 5, 1, 2, pool="pool2"),
    ConvLayer("conv3", 384, 3, 1, 1),
    ConvLayer("conv4", 256, 3, 1, 1),
    ConvLayer("conv5", 256, 3, 1, 1, pool="pool5"),
)

# Krizhevsky et al. 2012, Fig. 2: two towers (groups=2) except conv3; LRN after conv1, conv2.
PAPER_2012 = (
    ConvLayer("conv1", 96, 11, 4, 2, lrn=True, pool="pool1"),
    ConvLayer("conv2", 256, 5, 1, 2, groups=2, lrn=True, pool="pool2"),
    ConvLayer("conv3", 384, 3, 1, 1),
    ConvLayer("conv4", 384, 3, 1, 1, groups=2),
    ConvLayer("conv5", 256, 3, 1, 1, groups=2, pool="pool5"),
)

# §3.3: k = 2, n = 5, α = 1e-4, β = 0.75.
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)


def conv_trunk(module: nn.Module, x, convs: tuple[ConvLayer, ...], act, *,
               ceil_mode: bool = False, lrn: bool = True, lrn_after_pool: bool = False):
  """Runs ``convs`` inside ``module``'s compact call; sows 'stem' and one 'stageN' per pool.

  ``lrn=False`` skips every response-normalisation layer of the table; ``lrn_after_pool``
  normalises the pooled maps (ZFNet's order) instead of the conv output (AlexNet's).
  """
  norm = lambda y: layers.local_response_norm(y, **LRN)
  stage = 0
  for i, layer in enumerate(convs):
    x = nn.Conv(layer.features, (layer.kernel, layer.kernel), (layer.stride, layer.stride),
                padding=layers.conv_padding(layer.padding),
                feature_group_count=layer.groups, dtype=module.dtype, name=layer.name)(x)
    x = act(x)
    normalise = layer.lrn and lrn
    if normalise and not lrn_after_pool:
      x = norm(x)
    if i == 0:
      module.sow("intermediates", "stem", x)
    if layer.pool:
      x = layers.Pool(module.pool, 3, 2, ceil_mode=ceil_mode, name=layer.pool)(x)
    if normalise and lrn_after_pool:
      x = norm(x)
    if layer.pool:
      stage += 1
      module.sow("intermediates", f"stage{stage}", x)
  return x


def classifier(module: nn.Module, x, act, train: bool, *, dropout_after: bool):
  """Adaptive 6×6 pool, flatten, fc6 → fc7 → fc8 with dropout; sows 'pre_logits'.

  ``dropout_after=False`` is torchvision's order (dropout on the inputs of fc6 and fc7),
  ``True`` the paper's (dropout on the outputs of fc6 and fc7).
  """
  drop = lambda y: nn.Dropout(module.dropout, deterministic=not train)(y)
  x = layers.adaptive_avg_pool(x, (6, 6))
  x = x.reshape(x.shape[0], -1)
  for name in ("fc6", "fc7"):
    if not dropout_after:
      x = drop(x)
    x = act(nn.Dense(4096, dtype=module.dtype, name=name)(x))
    if name == "fc7":
      module.sow("intermediates", "pre_logits", x)
    if dropout_after:
      x = drop(x)
  return nn.Dense(module.num_classes, dtype=module.dtype, name="fc8")(x).astype(jnp.float32)


class AlexNet(layers.Options):
  """AlexNet: torchvision's single tower, or the 2012 two-tower network with ``original``."""

  num_classes: int = 1000
  original: bool = False
  pool: str = "max"
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = self.act()
    x = x.astype(self.dtype)
    x = conv_trunk(self, x, PAPER_2012 if self.original else TORCHVISION, act)
    return classifier(self, x, act, train, dropout_after=self.original)


SPECS = (
    ModelSpec("alexnet", AlexNet, input_size=224, min_input_size=63, paper=PAPER),
)
