"""ZFNet.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
(arXiv:1311.2901, 2013) — Fig. 3 (the architecture) and §3 (training details).

``zfnet`` follows Fig. 3 on a 224×224 input: conv1 96@7×7/2, 3×3/2 max pool, conv2 256@5×5/2,
3×3/2 max pool, conv3 384, conv4 384, conv5 256 @3×3/1, 3×3/2 max pool, then dropout 0.5 in
fc6 4096 and fc7 4096, and the classifier. It is AlexNet with a smaller, denser first layer and
a strided conv2, in a single tower (no grouped convolutions); the trunk and classifier code is
``alexnet.py``'s.

Padding and pooling, chosen to reproduce every map size of Fig. 3 (224 → 110 → 55 → 26 → 13 →
13 → 13 → 6): conv1 pads 1 (floor((224 + 2 − 7) / 2) + 1 = 110), conv2 pads 0 (floor((55 − 5) /
2) + 1 = 26), conv3–5 pad 1; the pools round up (``ceil_mode``, as in Caffe, which the paper's
sizes imply: 110 → 55, 26 → 13, 13 → 6). fc6 therefore reads 6×6×256 = 9,216 features, as in
the paper. Parameters: convs 14,208 + 614,656 + 885,120 + 1,327,488 + 884,992 = 3,726,464;
dense 37,752,832 + 16,781,312 + 4,097,000; total 62,357,608 (1000 classes).

Options: ``lrn=True`` adds the paper's contrast normalisation across feature maps in layers 1
and 2 (Fig. 3: ReLU, pool, then normalise), as AlexNet's local response normalisation (n=5,
α=1e-4, β=0.75, k=2; the paper gives no constants). It is off by default, as in common
reimplementations; it adds no parameters.

Deviations: an adaptive 6×6 average pool (torchvision's AlexNet) precedes fc6 — the identity at
224×224, it lets smaller inputs through (smallest: 47×47, where pool5 sees 2×2 maps and, rounding
up, makes one 3×3 window that hangs over the edge, as PyTorch and Caffe do); dropout is on the
outputs of fc6 and fc7, as in AlexNet (§4.2 there); the paper's renormalisation of first-layer
filters whose RMS exceeds 0.1 is a training-time constraint, not part of the module;
initialisation is flax's default (LeCun normal, zero biases), not the paper's 1e-2 weights.
"""

from __future__ import annotations


from flax import linen as nn

from cnnjax.models import layers
from cnnjax.models.alexnet import ConvLayer, classifier, conv_trunk
from cnnjax.models.spec import ModelSpec

PAPER = "Zeiler & Fergus 2014, ECCV (arXiv:1311.2901), Fig. 3"

# Fig. 3; lrn marks the two layers the paper contrast-normalises (used when ``lrn=True``).
FIG3 = (
    ConvLayer("conv1", 96, 7, 2, 1, lrn=True, pool="pool1"),
    ConvLayer("conv2", 256, 5, 2, 0, lrn=True, pool="pool2"),
    ConvLayer("conv3", 384, 3, 1, 1),
    ConvLayer("conv4", 384, 3, 1, 1),
    ConvLayer("conv5", 256, 3, 1, 1, pool="pool5"),
)


class ZFNet(layers.Options):
  """ZFNet (Fig. 3); ``lrn`` adds the contrast normalisation after layers 1 and 2."""

  num_classes: int = 1000
  lrn: bool = False
  pool: str = "max"
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = self.act()
    x = x.astype(self.dtype)
    x = conv_trunk(self, x, FIG3, act, ceil_mode=True, lrn=self.lrn, lrn_after_pool=True)
    return classifier(self, x, act, train, dropout_after=True)


SPECS = (
    ModelSpec("zfnet", ZFNet, input_size=224, min_input_size=47, paper=PAPER),
)
