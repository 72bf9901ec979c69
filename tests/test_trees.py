"""trees.py: the one flattener and the one tree-diff format, on hand-made trees."""

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import trees

F32 = "float32"


def test_paths_read_alike_for_dicts_tuples_and_dataclasses():
  tree = {"params": {"conv1": {"kernel": np.zeros((3, 3, 1, 6))}},
          "opt_state": (jnp.zeros(()), {"mu": [np.ones(2)]})}
  assert list(trees.flat(tree)) == ["opt_state/0", "opt_state/1/mu/0", "params/conv1/kernel"]
  assert trees.shapes(tree)["params/conv1/kernel"] == (3, 3, 1, 6)


def test_leaf_specs_of_arrays_shape_structs_and_numbers():
  tree = {"a": np.zeros((2, 3), np.float32), "b": jax.ShapeDtypeStruct((4,), jnp.bfloat16),
          "c": jnp.zeros((), jnp.int32), "n": None}
  assert trees.leaf_specs(tree) == {"a": ((2, 3), F32), "b": ((4,), "bfloat16"),
                                    "c": ((), "int32")}
  assert trees.spec(1.5) == ((), "float64")


def test_each_kind_of_difference_is_one_line_in_path_order():
  expected = {"fc/kernel": ((84, 12), F32), "fc/bias": ((12,), F32),
              "conv/kernel": ((5, 5, 1, 6), F32), "bn/mean": ((6,), F32)}
  got = {"fc/kernel": ((84, 10), F32), "fc/bias": ((12,), "bfloat16"),
         "conv/kernel": ((5, 5, 1, 6), F32), "aux/kernel": ((3, 4), F32)}
  assert trees.differences(got, expected, "the checkpoint") == [
      "aux/kernel float32[3, 4] is in the checkpoint, not in the model",
      "bn/mean float32[6] is not in the checkpoint",
      "fc/bias is bfloat16[12] in the checkpoint, float32[12] in the model",
      "fc/kernel is float32[84, 10] in the checkpoint, float32[84, 12] in the model"]
  assert trees.differences(got, got, "the checkpoint") == []
  assert trees.differences({}, {"step": ((), "int32")}, "the weights", "the state") == [
      "step int32[] is not in the weights"]


def test_collapse_names_a_wholly_missing_module_once():
  block = {f"layer2/{m}/{leaf}": ((3,), F32) for m in ("conv", "bn") for leaf in ("a", "b")}
  expected = {"layer1/conv/a": ((3,), F32), "layer1/conv/b": ((3,), F32), **block}
  got = {"layer1/conv/a": ((3,), F32), "extra/x/y": ((1,), F32), "extra/x/z": ((1,), F32)}
  assert trees.differences(got, expected, "the weights", collapse=True) == [
      "extra (2 leaves) is in the weights, not in the model",
      "layer1/conv/b float32[3] is not in the weights",  # its module is half there: the leaf
      "layer2 (4 leaves) is not in the weights"]
  assert len(trees.differences(got, expected, "the weights")) == 7  # without: every leaf


def test_joined_shows_the_first_lines_and_counts_the_rest():
  lines = [f"line {i}" for i in range(11)]
  assert trees.joined(lines) == "; ".join(lines[:8]) + " (and 3 more)"
  assert trees.joined(lines, 2) == "line 0; line 1 (and 9 more)"
  assert trees.joined(lines[:8]) == "; ".join(lines[:8])
  assert trees.joined([]) == ""
