"""merge.py in-process: a checkpoint strictly merged into a fresh init, on hand-made trees."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import models
from cnnjax.errors import UserError
from cnnjax.transfer import merge


def f32(*shape, value=0.0):
  return np.full(shape, value, np.float32)


def test_merge_fills_every_leaf_and_skips_only_what_it_is_told():
  ref = {"params": {"a": {"kernel": jnp.zeros((2, 3))}, "fc": {"kernel": jnp.zeros((3, 4))}}}
  new = {"params": {"a": {"kernel": jnp.ones((2, 3))}, "fc": {"kernel": jnp.ones((3, 5))}}}
  merged, skipped = merge.merge(ref, new, skip=("^fc/",))
  assert float(merged["params"]["a"]["kernel"].sum()) == 6.0
  assert float(merged["params"]["fc"]["kernel"].sum()) == 0.0 and skipped == ["params/fc/kernel"]


def test_every_difference_is_named_with_shapes_on_one_line():
  ref = {"params": {"a": {"kernel": f32(2, 3)}, "b": {"bias": f32(3)}},
         "batch_stats": {"bn": {"mean": f32(3)}}}
  new = {"params": {"a": {"kernel": f32(2, 4)}, "c": {"bias": f32(3)}}}
  with pytest.raises(UserError) as e:
    merge.merge(ref, new)
  assert str(e.value) == (
      "the checkpoint does not fit the model (4 differences outside config.init_skip=(); add "
      "skip patterns, e.g. config.init_skip=('head',), for leaves to keep fresh): "
      "a/kernel is float32[2, 4] in the checkpoint, float32[2, 3] in the model; "
      "b/bias float32[3] is not in the checkpoint; "
      "bn/mean float32[3] is not in the checkpoint; "
      "c/bias float32[3] is in the checkpoint, not in the model")


def test_a_skip_pattern_covers_missing_unexpected_and_mis_shaped_leaves():
  ref = {"params": {"body": {"kernel": f32(2)}, "fc": {"kernel": f32(4, 3), "bias": f32(3)}}}
  new = {"params": {"body": {"kernel": f32(2, value=7)}, "fc": {"kernel": f32(4, 10)},
                    "fc_aux": {"bias": f32(10)}}}
  merged, skipped = merge.merge(ref, new, skip=("^fc",))
  assert skipped == ["params/fc/bias", "params/fc/kernel"]
  assert merged["params"]["body"]["kernel"].tolist() == [7, 7]
  assert merged["params"]["fc"]["kernel"].shape == (4, 3) and "fc_aux" not in merged["params"]
  with pytest.raises(UserError, match=r"\(1 difference outside config.init_skip=\('\^fc/',\); .*"
                                      r": fc_aux/bias float32\[10\] is in the checkpoint, not in "):
    merge.merge(ref, new, skip=("^fc/",))  # fc_aux is not under fc/


def test_head_is_the_num_classes_dependent_leaves_not_a_pattern():
  ref = {"params": {"fc": {"kernel": f32(4, 3)}, "header": {"kernel": f32(2)}}}
  new = {"params": {"fc": {"kernel": f32(4, 10)}, "header": {"kernel": f32(5)}}}
  heads = {"fc/kernel"}
  with pytest.raises(UserError, match=r": header/kernel is float32\[5\] in the checkpoint, "
                                      r"float32\[2\] in the model$"):
    merge.merge(ref, new, skip=("head",), heads=heads)
  merged, skipped = merge.merge(ref, new, skip=("head", "^header/"), heads=heads)
  assert skipped == ["params/fc/kernel", "params/header/kernel"]


def test_another_dtype_does_not_merge():
  with pytest.raises(UserError, match=r"w is bfloat16\[2\] in the checkpoint, float32\[2\]"):
    merge.merge({"params": {"w": f32(2)}}, {"params": {"w": jnp.zeros(2, jnp.bfloat16)}})


def test_a_missing_module_is_named_once_and_long_lists_are_cut():
  block = {"conv": {"kernel": f32(3, 3)}, "bn": {"scale": f32(3)}}
  ref = {"params": {f"m{i:02d}": {"w": f32(1)} for i in range(14)} | {"block": block},
         "batch_stats": {"block": {"bn": {"mean": f32(3), "var": f32(3)}}}}
  with pytest.raises(UserError) as e:
    merge.merge(ref, {"params": {}})
  message = str(e.value)
  assert "(15 differences outside" in message and message.endswith("(and 3 more)")
  assert ": block (4 leaves) is not in the checkpoint; m00/w float32[1] is not in" in message


def test_a_bad_pattern_names_itself():
  with pytest.raises(UserError, match=r"bad pattern 'fc\(': "):
    merge.merge({"params": {}}, {"params": {}}, skip=("fc(",))


def test_head_paths_are_the_num_classes_dependent_leaves():
  assert merge.head_paths(models.create("lenet5"), (1, 28, 28, 1)) == {"fc3/kernel", "fc3/bias"}
  heads = merge.head_paths(models.create("googlenet", aux_logits=True), (1, 32, 32, 3))
  assert {"fc/kernel", "aux1/fc2/kernel", "aux2/fc2/kernel"} <= heads
  assert not any(h.startswith("conv1") for h in heads)
