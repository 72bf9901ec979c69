"""VGG.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015 — Table 1 (configurations A, B, D, E) and §2.1 (the layers).

Five stages of 3×3 convolutions (stride 1, padding 1) with 64/128/256/512/512 filters, each
stage ending in a 2×2/2 max pool; then fc6 4096 → ReLU → dropout 0.5 → fc7 4096 → ReLU →
dropout 0.5 → fc8. Convs per stage (``DEPTHS``): vgg11 = A (1,1,2,2,2), vgg13 = B (2,2,2,2,2),
vgg16 = D (2,2,3,3,3), vgg19 = E (2,2,4,4,4). Parameters (1000 classes): 132,863,336 /
133,047,848 / 138,357,544 / 143,667,240; the ``_bn`` variants add BatchNorm after every conv
(2 per channel): 132,868,840 / 133,053,736 / 138,365,992 / 143,678,248.

The form is torchvision's: an adaptive 7×7 average pool before fc6 (the identity at 224×224;
it lets inputs down to 32×32 through, where the paper's network needs 224), BatchNorm variants
(not in the paper, which predates BatchNorm), and its initialisation (He normal, fan-out, for
convs; N(0, 0.01) for dense layers; zero biases), which trains the deep configurations from
scratch where the paper had to start D and E from a trained A (§3.1).

Layer names are the paper's (as in its Caffe release): ``conv{stage}_{i}`` (``bn{stage}_{i}``),
``pool{stage}``, ``fc6``, ``fc7``, ``fc8`` — the rows of the course's VGG-16 table — and the same
in the plain and ``_bn`` variants; ``head='gap'`` (the ablations' option, after Lin et al. 2014's
global average pooling) replaces fc6 and fc7 with a mean over the last stage's map: vgg16 then
has 15,227,688 parameters (1000 classes) instead of 138,357,544; ``transfer/tv_vgg.py`` maps torchvision's
``features.N``/``classifier.N`` onto them. Not included: configurations A-LRN and C (1×1 convs).
"""

from __future__ import annotations


import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import unknown
from cnnjax.models import layers
from cnnjax.models.spec import ModelSpec

PAPER = "Simonyan & Zisserman 2015, ICLR, Table 1"

WIDTHS = (64, 128, 256, 512, 512)
HEADS = ("fc", "gap")

# Table 1: convolutions per stage of configurations A, B, D, E.
DEPTHS = {
    "vgg11": (1, 1, 2, 2, 2),  # A
    "vgg13": (2, 2, 2, 2, 2),  # B
    "vgg16": (2, 2, 3, 3, 3),  # D
    "vgg19": (2, 2, 4, 4, 4),  # E
}

# torchvision's init: He normal, fan-out, for convs (layers.CONV_INIT); N(0, 0.01) for dense.
DENSE_INIT = nn.initializers.normal(0.01)


class VGG(layers.Options):
  """VGG of ``depths`` convs per stage (Table 1); ``batch_norm`` adds BN after each conv."""

  depths: tuple[int, ...] = DEPTHS["vgg16"]
  batch_norm: bool = False
  num_classes: int = 1000
  pool: str = "max"
  dropout: float = 0.5
  head: str = "fc"  # fc: fc6-fc7-fc8 (the paper's) | gap: global average pooling, then fc8

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = self.act()
    x = x.astype(self.dtype)
    for s, (depth, width) in enumerate(zip(self.depths, WIDTHS), start=1):
      for i in range(1, depth + 1):
        x = nn.Conv(width, (3, 3), padding=layers.conv_padding(1),
                    kernel_init=layers.CONV_INIT, dtype=self.dtype, name=f"conv{s}_{i}")(x)
        if self.batch_norm:
          x = layers.batch_norm(train, self.dtype, f"bn{s}_{i}")(x)
        x = act(x)
        if s == 1 and i == 1:
          self.sow("intermediates", "stem", x)
      x = layers.Pool(self.pool, 2, 2, name=f"pool{s}")(x)
      self.sow("intermediates", f"stage{s}", x)
    if self.head not in HEADS:
      raise unknown("head", self.head, HEADS)
    if self.head == "gap":
      x = jnp.mean(x, axis=(1, 2))
      self.sow("intermediates", "pre_logits", x)
      return nn.Dense(self.num_classes, kernel_init=DENSE_INIT, dtype=self.dtype,
                      name="fc8")(x).astype(jnp.float32)
    x = layers.adaptive_avg_pool(x, (7, 7))
    x = x.reshape(x.shape[0], -1)
    for name in ("fc6", "fc7"):
      x = act(nn.Dense(4096, kernel_init=DENSE_INIT, dtype=self.dtype, name=name)(x))
      if name == "fc7":
        self.sow("intermediates", "pre_logits", x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, kernel_init=DENSE_INIT, dtype=self.dtype, name="fc8")(x)
    return x.astype(jnp.float32)


SPECS = tuple(
    ModelSpec(name + ("_bn" if bn else ""), VGG, fixed=dict(depths=depths, batch_norm=bn),
              input_size=224, min_input_size=32, paper=PAPER)
    for name, depths in DEPTHS.items() for bn in (False, True)
)
