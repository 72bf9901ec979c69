"""config.validate and config.check_against_data: every out-of-range key is one UserError line
of the form ``config.KEY must be ..., got VALUE.`` Pure and fast: nothing is trained or loaded."""

import re

import pytest

from cnnjax import config as config_lib
from cnnjax.errors import UserError
from experiments import base

NAN, INF = float("nan"), float("inf")

# (overrides, the whole message). A dotted key is set inside its sub-config.
BAD = [
    ({"seed": -1}, "config.seed must be an integer in [0, 2**63), got -1."),
    ({"seed": True}, "config.seed must be an integer in [0, 2**63), got True."),
    ({"seed": 2**63}, "config.seed must be an integer in [0, 2**63), got 9223372036854775808."),
    ({"batch_size": 0}, "config.batch_size must be positive, got 0."),
    ({"eval_batch_size": 0}, "config.eval_batch_size must be positive, got 0."),
    ({"eval_every_epochs": -1.0}, "config.eval_every_epochs must be >= 0, got -1.0."),
    ({"num_epochs": 0.0}, "config.num_epochs must be positive, got 0.0."),
    ({"num_epochs": INF}, "config.num_epochs must be finite and positive, got inf."),
    ({"num_steps": 0}, "config.num_steps must be positive, got 0."),
    ({"label_smoothing": 1.0}, "config.label_smoothing must be in [0, 1), got 1.0."),
    ({"num_classes": 0}, "config.num_classes must be an integer >= 1, got 0."),
    ({"model": "alexnet", "model_options.dropout": 1.0},
     "config.model_options.dropout must be in [0, 1), got 1.0."),
    ({"model": "resnet20", "model_options.drop_path": 1.0},
     "config.model_options.drop_path must be in [0, 1), got 1.0."),
    ({"model_options.activation": "leaky_relu", "model_options.negative_slope": -0.1},
     "config.model_options.negative_slope must be >= 0, got -0.1."),
    ({"data.image_size": 0}, "config.data.image_size must be positive, got 0."),
    ({"data.crop": -224}, "config.data.crop must be positive, got -224."),
    ({"data.resize": 0}, "config.data.resize must be positive, got 0."),
    ({"data.crop": 224, "data.resize": 200},
     "config.data.resize must be >= config.data.crop=224, got 200."),
    ({"data.max_shift": -1}, "config.data.max_shift must be >= 0, got -1."),
    ({"data.train_per_class": 0}, "config.data.train_per_class must be positive, got 0."),
    ({"data.val_fraction": 0.0}, "config.data.val_fraction must be in (0, 1), got 0.0."),
    ({"data.val_fraction": 1.0}, "config.data.val_fraction must be in (0, 1), got 1.0."),
    ({"data.num_threads": 0}, "config.data.num_threads must be an integer >= 1, got 0."),
    ({"steps_per_call": 0}, "config.steps_per_call must be an integer >= 1, got 0."),
    ({"grad_accum_steps": 0}, "config.grad_accum_steps must be an integer >= 1, got 0."),
    ({"ema.decay": 1.0}, "config.ema.decay must be in [0, 1), got 1.0."),
    ({"ema.decay": -0.5}, "config.ema.decay must be in [0, 1), got -0.5."),
    ({"data.channels": 2}, "config.data.channels must be 1 or 3, got 2."),
    ({"optimizer.learning_rate": 0.0}, "config.optimizer.learning_rate must be positive, got 0.0."),
    ({"optimizer.learning_rate": NAN},
     "config.optimizer.learning_rate must be finite and positive, got nan."),
    ({"optimizer.learning_rate": INF},
     "config.optimizer.learning_rate must be finite and positive, got inf."),
    ({"optimizer.momentum": 1.0}, "config.optimizer.momentum must be in [0, 1), got 1.0."),
    ({"optimizer.momentum": -0.1}, "config.optimizer.momentum must be in [0, 1), got -0.1."),
    ({"optimizer.weight_decay": -1e-4},
     "config.optimizer.weight_decay must be >= 0, got -0.0001."),
    ({"optimizer.b1": 1.0}, "config.optimizer.b1 must be in [0, 1), got 1.0."),
    ({"optimizer.b2": 1.5}, "config.optimizer.b2 must be in [0, 1), got 1.5."),
    ({"optimizer.eps": 0.0}, "config.optimizer.eps must be positive, got 0.0."),
    ({"optimizer.decay": 1.0}, "config.optimizer.decay must be in [0, 1), got 1.0."),
    ({"optimizer.grad_clip_norm": 0.0},
     "config.optimizer.grad_clip_norm must be positive, got 0.0."),
    ({"optimizer.trust_coefficient": 0.0},
     "config.optimizer.trust_coefficient must be positive, got 0.0."),
    ({"schedule.warmup_epochs": -1.0}, "config.schedule.warmup_epochs must be >= 0, got -1.0."),
    ({"schedule.decay_epochs": (30, -1)},
     "config.schedule.decay_epochs[1] must be >= 0, got -1."),
    ({"schedule.decay_factor": 0.0}, "config.schedule.decay_factor must be positive, got 0.0."),
    ({"schedule.final_lr_fraction": 1.5},
     "config.schedule.final_lr_fraction must be in [0, 1], got 1.5."),
    ({"schedule.final_lr_fraction": -0.1},
     "config.schedule.final_lr_fraction must be in [0, 1], got -0.1."),
    ({"mixup.alpha": -0.2}, "config.mixup.alpha must be >= 0, got -0.2."),
    ({"mixup.prob": 1.5}, "config.mixup.prob must be in [0, 1], got 1.5."),
    ({"mixup.switch_prob": NAN}, "config.mixup.switch_prob must be finite and in [0, 1], got nan."),
    ({"cutmix.alpha": -1.0}, "config.cutmix.alpha must be >= 0, got -1.0."),
    ({"randaugment.num_ops": -1}, "config.randaugment.num_ops must be an integer >= 0, got -1."),
    ({"randaugment.magnitude": 31.0},
     "config.randaugment.magnitude must be in [0, 30] (torchvision's RandAugment bins), got 31.0."),
    ({"randaugment.magnitude_std": -0.5},
     "config.randaugment.magnitude_std must be >= 0, got -0.5."),
    ({"schedule.power": -2.0}, "config.schedule.power must be positive, got -2.0."),
    ({"init_skip": ("head", "conv(")},
     "config.init_skip[1] must be a valid regular expression, got 'conv(' (missing ), "
     "unterminated subpattern at position 4)."),
]


def configured(overrides):
  c = base.get_config()
  for key, value in overrides.items():
    *parents, name = key.split(".")
    target = c
    for p in parents:
      target = target[p]
    setattr(target, name, value)
  return c


@pytest.mark.parametrize("overrides,message", BAD, ids=[m.split(" must")[0] + "=" + m.split(
    "got ")[-1].rstrip(".") for _, m in BAD])
def test_out_of_range_key_is_one_line_naming_key_and_value(overrides, message):
  with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
    config_lib.validate(configured(overrides))


@pytest.mark.parametrize("overrides", [
    {},
    {"seed": 0, "data.max_shift": 0, "optimizer.momentum": 0.0, "schedule.final_lr_fraction": 1.0},
    {"data.crop": 224, "data.resize": 224, "num_classes": 1, "data.num_threads": 1},
    {"optimizer.grad_clip_norm": 1.0, "schedule.decay_epochs": (0, 30.5), "init_skip": ("head",)},
    {"model": "alexnet", "model_options.dropout": 0.0, "data.val_fraction": 0.5},
    {"mixup.alpha": 0.0, "mixup.prob": 0.0, "mixup.switch_prob": 1.0, "cutmix.alpha": 1.0,
     "randaugment.num_ops": 0, "randaugment.magnitude": 30.0, "randaugment.magnitude_std": 0.0},
    {"mixup.prob": 1.0, "mixup.switch_prob": 0.0, "randaugment.magnitude": 0.0},
])
def test_values_at_the_edges_of_each_range_are_accepted(overrides):
  config_lib.validate(configured(overrides))


def test_max_shift_must_be_below_the_training_images_size():
  config_lib.check_against_data(configured({"data.max_shift": 27}), (28, 28, 1))
  with pytest.raises(UserError, match=re.escape(
      "config.data.max_shift must be < 8 (the training images are 8x12), got 8.")):
    config_lib.check_against_data(configured({"data.max_shift": 8}), (8, 12, 3))


def test_steps_are_derived_from_the_final_config():
  c = config_lib.defaults()
  c.batch_size, c.num_epochs, c.eval_every_epochs = 100, 2.5, 0.5
  c.schedule.warmup_epochs, c.schedule.decay_epochs = 1.0, (1.5,)
  c.log_every_steps, c.checkpoint_every_steps, c.steps_per_call = 5, 20, 2
  steps = config_lib.Steps.from_config(c, 1000)  # 10 steps per epoch
  assert steps == config_lib.Steps(steps_per_epoch=10.0, total_steps=25, warmup_steps=10,
                                   decay_steps=(15,), eval_every_steps=5, log_every_steps=5,
                                   checkpoint_every_steps=20, steps_per_call=2)
  c.num_steps, c.eval_every_epochs = 7, 0.0
  steps = config_lib.Steps.from_config(c, 1000)
  assert (steps.total_steps, steps.eval_every_steps) == (7, 0)


def test_leaf_keys_are_the_same_for_a_config_and_its_json():
  import json  # pylint: disable=import-outside-toplevel
  c = config_lib.defaults()
  as_json = json.loads(c.to_json_best_effort())
  keys = config_lib.leaf_keys(c)
  assert sorted(config_lib.leaf_keys(as_json)) == sorted(keys)
  assert "optimizer.name" in keys and "data.max_shift" in keys and "data" not in keys
  assert config_lib.leaf_keys({"a": {}, "b": {"c": 1}}) == ["b.c"]  # an empty section: no leaf
