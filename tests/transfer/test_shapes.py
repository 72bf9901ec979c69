"""shapes.py in-process: converted weights compared with the model's reference tree."""

import jax
import numpy as np

from cnnjax import models
from cnnjax.transfer import shapes


def f32(*shape):
  return np.zeros(shape, np.float32)


def bn(channels):
  return {"scale": f32(channels), "bias": f32(channels)}, {"mean": f32(channels),
                                                           "var": f32(channels)}


def variables(blocks, fc_classes=10, conv1=(3, 3, 3, 8)):
  """A ResNet in miniature: conv1, ``blocks`` blocks of a conv and a BatchNorm, fc."""
  params, stats = {"conv1": {"kernel": f32(*conv1)}, "fc": {"kernel": f32(8, fc_classes)}}, {}
  for i in range(blocks):
    params[f"block{i}"] = {"conv": {"kernel": f32(3, 3, 8, 8)}, "bn": bn(8)[0]}
    stats[f"block{i}"] = {"bn": bn(8)[1]}
  return {"params": params, "batch_stats": stats}


def test_leaf_specs_drop_the_collection():
  specs = shapes.leaf_specs(variables(1))
  assert specs["block0/bn/scale"] == specs["block0/bn/mean"] == ((8,), "float32")
  assert len(specs) == 2 + 3 + 2  # conv1, fc; the block's conv, scale, bias; mean, var


def test_equal_trees_have_no_mismatch():
  assert shapes.mismatch(variables(2), variables(2)) is None


def test_a_missing_block_is_named_once_across_params_and_batch_stats():
  problem = shapes.mismatch(variables(3), variables(1, conv1=(7, 7, 3, 8)))
  assert problem == ("block1 (5 leaves) is not in the converted weights; "
                     "block2 (5 leaves) is not in the converted weights; "
                     "conv1/kernel is float32[7, 7, 3, 8] in the converted weights, "
                     "float32[3, 3, 3, 8] in the model")
  assert shapes.mismatch(variables(1), variables(2)) == (
      "block1 (5 leaves) is in the converted weights, not in the model")


def test_a_long_mismatch_is_cut_after_eight():
  problem = shapes.mismatch(variables(12), variables(1))
  assert problem.count("is not in the converted weights") == 8 and problem.endswith("(and 3 more)")


def test_reference_is_abstract_and_heads_carry_their_collection():
  ref = shapes.reference("lenet5", 10, {})
  assert set(ref) == {"params"}
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(ref))
  assert shapes.leaf_specs(ref)["fc3/kernel"] == ((84, 10), "float32")
  heads = shapes.head_paths(models.create("lenet5"), (1, 28, 28, 1))
  assert heads == {"params/fc3/kernel", "params/fc3/bias"}
