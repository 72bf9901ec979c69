"""LeNet-5.

LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document recognition",
Proc. IEEE 1998 — Fig. 2 (the architecture) and Table I (the C3 connection table).

``lenet5`` is the modern form every course teaches: conv 6@5×5 (padding 2, so a 28×28 MNIST
digit gives 28×28 maps, as the paper's 32×32 padded input does), 2×2 max pool, conv 16@5×5, 2×2
max pool, dense 120-84-10, ReLU: 61,706 parameters. For the ablations (not in the paper):
``dropout`` after fc1 and fc2, and ``batch_norm`` (BatchNorm before each hidden activation, the
biases kept: 2 × (6 + 16 + 120 + 84) = 452 more parameters, 62,158).

``original=True`` gives the 1998 form:
  * scaled tanh ``1.7159·tanh(2x/3)`` (Appendix A);
  * trainable subsampling S2/S4: each map's 2×2 sum times a trainable coefficient plus a
    trainable bias, then the squashing function (§II.B);
  * C3 connects to S2 through the partial table of Table I (60 of the 96 map pairs);
  * C5 is a 5×5 convolution covering the whole 5×5 S4 map (= a dense layer of 120), F6 has 84;
  * the output is 10 Euclidean RBF units with fixed ±1 codes: logit_i = −‖f6 − c_i‖².
  Deviation: the paper drew its codes as 7×12 bitmaps of the characters; ours are fixed
  pseudo-random ±1 codes (seed 1998), which serve the same purpose for digits.
  Trainable parameters: C1 156 + S2 12 + C3 1,516 + S4 32 + C5 48,120 + F6 10,164 = 60,000
  exactly (the RBF codes are constants, not parameters).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from cnnjax.models import layers
from cnnjax.models.spec import ModelSpec

PAPER = "LeCun et al. 1998, Proc. IEEE 86(11), Fig. 2 and Table I"

# Table I: for each C3 map, the S2 maps it reads.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def scaled_tanh(x):
  """LeCun's squashing function, Appendix A: f(a) = 1.7159 tanh(2a/3)."""
  return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


class TrainableSubsampling(nn.Module):
  """S2/S4: a 2×2 pool per map times a trainable coefficient plus a trainable bias.

  The paper sums the four inputs (``pool='avg'`` here, up to the constant 4 the coefficient
  absorbs); ``pool='max'`` swaps the aggregation for a maximum.
  """

  pool: str = "avg"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    coef = self.param("coef", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    pooled = layers.pool(x, self.pool, window=2, stride=2)
    return pooled * coef.astype(self.dtype) + bias.astype(self.dtype)


class PartialConv(nn.Module):
  """C3: a 5×5 convolution in which output map j reads only the input maps ``table[j]``.

  Only the connected kernels are parameters (60 × 25 weights + 16 biases = 1,516); they are
  scattered into a dense kernel whose unconnected slices are zero. ``conv_general_dilated``
  (default ``lax.conv_general_dilated``) is the same field as ``nn.Conv``'s, so a lowering that
  swaps it there swaps it here.
  """

  table: tuple[tuple[int, ...], ...] = C3_TABLE
  in_features: int = 6
  kernel_size: int = 5
  dtype: Any = jnp.float32
  conv_general_dilated: Any = None

  @nn.compact
  def __call__(self, x):
    ins = np.array([i for row in self.table for i in row])
    outs = np.array([j for j, row in enumerate(self.table) for _ in row])
    k = self.kernel_size
    # Appendix A: uniform in ±2.4/F_i, F_i the fan-in (here the mean over the table's maps).
    bound = 2.4 / (k * k * np.mean([len(r) for r in self.table]))
    init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)
    w = self.param("kernel", init, (k, k, len(ins)), jnp.float32)
    b = self.param("bias", nn.initializers.zeros, (len(self.table),), jnp.float32)
    kernel = jnp.zeros((k, k, self.in_features, len(self.table)), jnp.float32)
    kernel = kernel.at[:, :, ins, outs].set(w).astype(self.dtype)
    conv = self.conv_general_dilated or lax.conv_general_dilated
    y = conv(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + b.astype(self.dtype)


class LeNet5(layers.Options):
  """LeNet-5 (see the module docstring for the two forms)."""

  num_classes: int = 10
  original: bool = False
  pool: str = "max"
  dropout: float = 0.0  # the ablations' option: after fc1 and fc2 (not in the paper)
  batch_norm: bool = False  # the ablations' option: BN before each hidden activation

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(self.dtype)
    if self.original:
      return self._original(x)
    act = self.act()

    def norm_act(y, name):
      return act(layers.batch_norm(train, self.dtype, name)(y) if self.batch_norm else y)

    x = norm_act(nn.Conv(6, (5, 5), padding=layers.conv_padding(2), dtype=self.dtype,
                         name="conv1")(x), "bn1")
    self.sow("intermediates", "stem", x)
    x = layers.Pool(self.pool, 2, 2, name="pool1")(x)
    self.sow("intermediates", "stage1", x)
    x = norm_act(nn.Conv(16, (5, 5), padding="VALID", dtype=self.dtype, name="conv2")(x),
                 "bn2")
    x = layers.Pool(self.pool, 2, 2, name="pool2")(x)
    self.sow("intermediates", "stage2", x)
    x = x.reshape(x.shape[0], -1)
    for i, width in ((3, 120), (4, 84)):
      x = norm_act(nn.Dense(width, dtype=self.dtype, name=f"fc{i - 2}")(x), f"bn{i}")
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    self.sow("intermediates", "pre_logits", x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc3")(x).astype(jnp.float32)

  def _original(self, x):
    # The 1998 form uses the scaled tanh unless another activation is asked for explicitly.
    act = scaled_tanh if self.activation == "relu" else self.act()
    pool = "avg" if self.pool == "max" else self.pool
    x = jnp.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])  # 28×28 digits centred in 32×32
    x = act(nn.Conv(6, (5, 5), padding="VALID", dtype=self.dtype, name="c1")(x))
    self.sow("intermediates", "stem", x)
    x = act(TrainableSubsampling(pool, self.dtype, name="s2")(x))
    self.sow("intermediates", "stage1", x)
    x = act(PartialConv(dtype=self.dtype, name="c3")(x))
    x = act(TrainableSubsampling(pool, self.dtype, name="s4")(x))
    self.sow("intermediates", "stage2", x)
    x = act(nn.Conv(120, (5, 5), padding="VALID", dtype=self.dtype, name="c5")(x))
    x = x.reshape(x.shape[0], -1)
    x = act(nn.Dense(84, dtype=self.dtype, name="f6")(x))
    self.sow("intermediates", "pre_logits", x)
    codes = np.random.default_rng(1998).choice([-1.0, 1.0], size=(self.num_classes, 84))
    dist = jnp.sum(jnp.square(x[:, None, :].astype(jnp.float32) - codes[None]), axis=-1)
    return -dist


SPECS = (
    ModelSpec("lenet5", LeNet5, input_size=28, min_input_size=28, channels=1, num_classes=10,
              paper=PAPER),
)
