"""Fine-tuning: frozen layers and LR multipliers, and initialising a run from a checkpoint
(the merge itself: test_merge.py)."""

import os

import jax
import numpy as np
import pytest

from cnnjax import checkpoint
from cnnjax.errors import UserError
from cnnjax.train import loop, resolve
from cnnjax.transfer import finetune
from tests.train.test_loop import tiny_config


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


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_restore_into_a_new_head_needs_the_skip_pattern(tmp_path, data_dir):
  pre = str(tmp_path / "pre")
  loop.train(tiny_config(data_dir, num_steps=2), pre, devices=jax.devices()[:1])
  config = tiny_config(data_dir, num_steps=2, num_classes=12, init_from=pre)
  with pytest.raises(UserError, match=r"fc3/kernel is float32\[84, 10\] in the checkpoint, "
                                      r"float32\[84, 12\] in the model"):
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
