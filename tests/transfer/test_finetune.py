"""Initialising from checkpoints and fine-tuning: strict merges, frozen layers, LR multipliers."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import checkpoint, models
from cnnjax.errors import UserError
from cnnjax.train import loop, resolve
from cnnjax.transfer import finetune, merge
from tests.train.test_loop import tiny_config


def test_merge_fills_every_leaf_and_skips_only_what_it_is_told():
  ref = {"params": {"a": {"kernel": jnp.zeros((2, 3))}, "fc": {"kernel": jnp.zeros((3, 4))}}}
  new = {"params": {"a": {"kernel": jnp.ones((2, 3))}, "fc": {"kernel": jnp.ones((3, 5))}}}
  merged, skipped = merge.merge(ref, new, skip=("^fc/",))
  assert float(merged["params"]["a"]["kernel"].sum()) == 6.0
  assert float(merged["params"]["fc"]["kernel"].sum()) == 0.0 and skipped == ["params/fc/kernel"]


def test_merge_names_every_problem_with_shapes():
  ref = {"params": {"a": {"kernel": jnp.zeros((2, 3))}, "b": {"bias": jnp.zeros(3)}},
         "batch_stats": {"bn": {"mean": jnp.zeros(3)}}}
  new = {"params": {"a": {"kernel": jnp.ones((2, 4))}, "c": {"bias": jnp.ones(3)}}}
  with pytest.raises(UserError) as e:
    merge.merge(ref, new)
  msg = str(e.value)
  assert "shape of params/a/kernel: checkpoint (2, 4), model (2, 3)" in msg
  assert "missing params/b/bias (3,)" in msg and "missing batch_stats/bn/mean (3,)" in msg
  assert "unexpected params/c/bias (3,)" in msg and "\n" not in msg


def test_head_paths_are_the_num_classes_dependent_leaves():
  assert merge.head_paths(models.create("lenet5"), (1, 28, 28, 1)) == {"fc3/kernel", "fc3/bias"}
  heads = merge.head_paths(models.create("googlenet", aux_logits=True), (1, 32, 32, 3))
  assert {"fc/kernel", "aux1/fc2/kernel", "aux2/fc2/kernel"} <= heads
  assert not any(h.startswith("conv1") for h in heads)


def test_freeze_until_and_multipliers_labels():
  params = {"conv1": {"kernel": 0}, "conv2": {"kernel": 0}, "fc1": {"kernel": 0},
            "fc3": {"kernel": 0, "bias": 0}}
  frozen = finetune.frozen_modules(params, "freeze", set(), "conv2")
  assert frozen == {"conv1", "conv2"}
  labels = finetune.labels(params, frozen, finetune.parse_multipliers(["fc3:10", "fc:0.5"]))
  assert labels == {"conv1": {"kernel": "frozen"}, "conv2": {"kernel": "frozen"},
                    "fc1": {"kernel": "lr_x0.5"}, "fc3": {"kernel": "lr_x10", "bias": "lr_x10"}}
  probe = finetune.frozen_modules(params, "linear_probe", {"fc3/kernel", "fc3/bias"}, None)
  assert probe == {"conv1", "conv2", "fc1"}
  with pytest.raises(UserError, match="freeze_until 'layer9'"):
    finetune.frozen_modules(params, "freeze", set(), "layer9")
  with pytest.raises(UserError, match="bad learning-rate multiplier 'fc3'"):
    finetune.parse_multipliers(["fc3"])


@pytest.fixture(scope="module")
def pretrained_resnet20(tmp_path_factory, data_dir):
  """resnet20 (BatchNorm) trained a few steps on the embedded MNIST."""
  workdir = str(tmp_path_factory.mktemp("pre"))
  loop.train(tiny_config(data_dir, model="resnet20", num_steps=3, batch_size=16,
                         eval_batch_size=1000), workdir, devices=jax.devices()[:1])
  return workdir


def _variables(workdir):
  return checkpoint.latest_variables(workdir)


def test_linear_probe_leaves_backbone_and_batchnorm_bit_identical(tmp_path, data_dir,
                                                                  pretrained_resnet20):
  before = _variables(pretrained_resnet20)
  config = tiny_config(data_dir, model="resnet20", dataset="uci_digits", num_steps=4,
                       batch_size=16, init_from=pretrained_resnet20, init_skip=("head",))
  config.finetune.mode = "linear_probe"
  loop.train(config, str(tmp_path), devices=jax.devices()[:1])
  after = _variables(str(tmp_path))
  for collection in ("params", "batch_stats"):
    for name, subtree in before[collection].items():
      if name == "fc":
        continue
      for a, b in zip(jax.tree.leaves(subtree), jax.tree.leaves(after[collection][name])):
        np.testing.assert_array_equal(a, b)
  assert not np.array_equal(before["params"]["fc"]["kernel"], after["params"]["fc"]["kernel"])


def test_restore_into_a_new_head_needs_the_skip_pattern(tmp_path, data_dir):
  pre = str(tmp_path / "pre")
  loop.train(tiny_config(data_dir, num_steps=2), pre, devices=jax.devices()[:1])
  config = tiny_config(data_dir, num_steps=2, num_classes=12, init_from=pre)
  with pytest.raises(UserError, match=r"fc3/kernel: checkpoint \(84, 10\), model \(84, 12\)"):
    loop.train(config, str(tmp_path / "strict"), devices=jax.devices()[:1])
  config = tiny_config(data_dir, num_steps=2, num_classes=12, init_from=pre,
                       init_skip=("head",))
  config.finetune.mode = "freeze"
  config.finetune.freeze_until = "conv2"
  loop.train(config, str(tmp_path / "ok"), devices=jax.devices()[:1])
  a, b = _variables(pre), _variables(str(tmp_path / "ok"))
  for name in ("conv1", "conv2"):
    np.testing.assert_array_equal(a["params"][name]["kernel"], b["params"][name]["kernel"])
  assert not np.array_equal(a["params"]["fc1"]["kernel"], b["params"]["fc1"]["kernel"])


def test_frozen_parameters_carry_no_optimizer_state(tmp_path, data_dir):
  def opt_leaves(mode, freeze_until=None):
    config = tiny_config(data_dir)
    config.finetune.mode, config.finetune.freeze_until = mode, freeze_until
    s = resolve.resolve(config)
    state = loop.abstract_state(s)
    return sum(x.size for x in jax.tree.leaves(state.opt_state))
  full, frozen = opt_leaves("full"), opt_leaves("freeze", "fc1")
  # Adam keeps two moments per parameter; conv1+conv2+fc1 = 156 + 2,416 + 48,120 are frozen.
  assert full - frozen == 2 * (156 + 2416 + 48120)
