"""Receptive fields by interval analysis: hand-computed cases, and the published values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.inspect import receptive
from cnnjax.models import layers
from tests.inspect import common


def _fields(f, shape=(1, 16, 16, 1)):
  """Theoretical field of every output of ``f`` (an input-only function)."""
  closed = jax.make_jaxpr(f)(jax.ShapeDtypeStruct(shape, jnp.float32))
  a = receptive.analyse(closed, [receptive.input_state(shape)])
  outs = closed.jaxpr.outvars
  return [a.states[v] for v in outs], a


def _conv(x, k, stride=1, pad=0, dilation=1):
  w = jnp.ones((k, k, x.shape[-1], 1))
  return jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad)] * 2,
                                      rhs_dilation=(dilation, dilation),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_a_chain_composes_like_the_textbook_formula():
  # conv 3/2: r = 3, j = 2; pool 2/2: r = 3 + 1·2 = 5, j = 4; conv 3 dilated 2: r = 5 + 2·2·4.
  f = lambda x: _conv(layers.pool(_conv(x, 3, stride=2, pad=1), "max", 2, 2), 3, dilation=2)
  (state,), a = _fields(f, (1, 32, 32, 1))
  h, w = state
  assert (h.size, h.jump, w.size, w.jump) == (21, 4, 21, 4)
  # Unit 0 starts at the padding: conv1 unit 0 reads input [-1, 1].
  assert (h.lo[0], h.hi[0]) == (-1, 19)
  assert not a.approximate


def test_padding_does_not_shrink_the_field_and_slices_move_it():
  (state,), _ = _fields(lambda x: _conv(x, 5, pad=2)[:, 3:9:2])
  h, w = state
  np.testing.assert_array_equal(h.lo, [1, 3, 5])  # rows 3, 5, 7 read [r-2, r+2]
  assert h.size == 5 and h.jump == 2 and w.size == 5 and w.jump == 1
  assert (w.lo[0], w.hi[0]) == (-2, 2)  # border unit: its field runs into the padding


def test_branches_and_residuals_take_the_hull():
  def block(x):
    a = _conv(x, 1)  # 1
    b = _conv(_conv(x, 3, pad=1), 3, pad=1)  # 5
    return jnp.concatenate([a, b], axis=-1) + _conv(x, 7, pad=3)  # a residual of 7
  (state,), _ = _fields(block)
  assert [ax.size for ax in state] == [7, 7]


def test_global_pooling_and_flattening_reduce_to_the_hull():
  f = lambda x: jnp.mean(_conv(x, 3), axis=(1, 2))
  (state,), a = _fields(f)
  assert all(ax.dim is None and (ax.lo[0], ax.hi[0]) == (0, 15) for ax in state)
  assert [e.kind for e in a.events] == ["conv", "global_avg_pool"]
  (flat,), _ = _fields(lambda x: _conv(x, 3).reshape(1, -1) @ jnp.ones((196, 2)))
  assert all(ax.dim is None and ax.size == 16 for ax in flat)
  # A 1x1 map flattened: its length-1 axes must not land on the (length-1) batch axis.
  (one,), _ = _fields(lambda x: _conv(x, 16).reshape(1, -1))
  assert all(ax.dim is None and ax.jump is None and ax.size == 16 for ax in one)


def _field(name, tap, **options):
  """(size, jump) of the field of ``tap``'s units; square in every model here."""
  h, w = common.traced(name, **options).field(tap)
  assert (h.size, h.jump) == (w.size, w.jump)
  return h.size, h.jump


# Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural Networks", Distill
# 2019, Table 1 (TF-slim's networks at their final feature layer): r, effective stride.
@pytest.mark.parametrize("name, tap, options, published", [
    ("vgg16", "pool5", {}, (212, 32)),  # vgg_16
    ("alexnet", "pool5", {}, (195, 32)),  # alexnet_v2: the same kernels and strides
    ("inception_v3", "Mixed_7c", {}, (1311, 32)),  # the hull of the module's branches
    # resnet_v1_50: stride in the first 1x1 conv of a downsampling block, ``original=True``.
    ("resnet50", "layer4_2", {"original": True}, (483, 32)),
])
def test_published_receptive_fields(name, tap, options, published):
  assert _field(name, tap, **options) == published


def test_resnet50_v1_5_sees_56_pixels_less_than_v1():
  # torchvision's v1.5 strides in the 3x3 conv of each downsampling block, so that 3x3 window
  # is laid at the finer jump j instead of 2j: stages 2, 3, 4 each lose 2·j (8, 16, 32 pixels).
  # The published 483 is for v1 (``original=True``, above).
  assert _field("resnet50", "layer4_2") == (427, 32)
  assert 483 - 427 == 2 * (4 + 8 + 16)
  assert _field("resnet50", "stage4") == (427, 32)  # the sown feature is the same array


def test_lenet_rows_by_hand():
  rows = common.table("lenet5").rows
  assert [(r.name, r.rf[0], r.jump[0]) for r in rows[:5]] == [
      ("input", 1, 1), ("conv1", 5, 1), ("pool1", 6, 2), ("conv2", 14, 2), ("pool2", 16, 4)]
  # fc1 reads all 5x5 pool2 units: the hull of their fields, 16 + 4·4 = 32 (28 + 2 padding each
  # side).
  assert rows[5].rf == (32, 32) and rows[5].jump == (None, None)
