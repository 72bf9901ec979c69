"""``resolve``: one ``UserError`` per bad input, before anything is written or compiled; the
``Run`` it builds holds each setting once, as the config gave it."""

import os

import jax
import pytest

from cnnjax import config as config_lib
from cnnjax.data import augment
from cnnjax.errors import UserError
from cnnjax.train import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lenet(data_dir, **values):
  c = config_lib.load(os.path.join(ROOT, "experiments/lenet_mnist.py"))
  c.data.data_dir = data_dir
  return config_lib.with_values(c, values)


@pytest.mark.parametrize("values,message", [
    ({"optimizer.name": "adamm"}, r"unknown optimizer 'adamm'"),
    ({"schedule.name": "cosin"}, r"unknown schedule 'cosin'"),
    ({"model": "lenet6"}, r"unknown model 'lenet6'"),
    ({"model_options.shortcut": "B"}, r"^model 'lenet5' takes no option 'shortcut'"),
    ({"num_steps": 0}, r"^config.num_steps must be positive, got 0\.$"),
    ({"checkpoint_every_steps": 15, "log_every_steps": 10},
     r"^config.checkpoint_every_steps=15 must be a multiple of config.log_every_steps=10"),
])
def test_config_only_errors_need_no_data(values, message):
  c = config_lib.with_values(config_lib.defaults(), values)
  c.data.data_dir = "/nonexistent"  # never opened: these fail first
  with pytest.raises(UserError, match=message):
    resolve.check(c)
  with pytest.raises(UserError, match=message):
    resolve.resolve(c, devices=jax.devices()[:1])


@pytest.mark.parametrize("values,message", [
    ({"num_classes": 5}, r"^config.num_classes=5 is smaller than the 10 classes of mnist5k\.$"),
    ({"data.eval_split": "test[:0]"}, r"split 'test\[:0\]' of mnist5k"),
    ({"data.channels": 2}, r"^config.data.channels must be 1 or 3, got 2\.$"),
    ({"data.max_shift": 28},
     r"^config.data.max_shift must be < 28 \(the training images are 28x28\), got 28\.$"),
    ({"model": "alexnet", "data.image_size": 32},
     r"^config.data.image_size=32 is below alexnet's minimum input size \d+\.$"),
    ({"batch_size": 12}, r"batch_size"),  # not a multiple of the 8 devices
    ({"batch_size": 24, "grad_accum_steps": 2},
     r"^config.batch_size=24 must be divisible by config.grad_accum_steps × devices = 2 × 8 = "
     r"16, so that every micro-batch splits evenly over the devices\.$"),
])
def test_errors_that_need_the_data(data_dir, values, message):
  devices = jax.devices() if "batch_size" in values else jax.devices()[:1]
  with pytest.raises(UserError, match=message):
    resolve.resolve(lenet(data_dir, **values), devices=devices)


def test_the_run_holds_each_setting_once(data_dir):
  c = lenet(data_dir, **{"batch_size": 64, "num_steps": 40, "data.flip": True,
                         "label_smoothing": 0.1, "steps_per_call": 4, "seed": 3})
  run = resolve.resolve(c, devices=jax.devices()[:1])
  assert run.data.augment == augment.Augment(max_shift=2, flip=True)
  assert (run.data.dataset, run.data.seed, run.data.batch_size) == ("mnist5k", 3, 64)
  assert run.data.eval_batch_size == c.eval_batch_size
  assert run.steps == config_lib.Steps.from_config(c, 4000)
  assert (run.steps.total_steps, run.steps.steps_per_call) == (40, 4)
  assert run.input_shape == (1, 28, 28, 1)  # LeNet-5's own size
  assert (run.seed, run.label_smoothing, run.train_mode) == (3, 0.1, True)
  assert (run.init_from, run.init_skip, run.keep_checkpoints) == (None, (), c.keep_checkpoints)
  assert run.config["batch_size"] == 64 and run.config["data"]["flip"] is True


@pytest.mark.parametrize("platform,dtype,steps", [("cpu", "float32", 1), ("gpu", "bfloat16", 8)])
def test_open_keys_take_the_platforms_defaults_and_set_ones_stay(platform, dtype, steps):
  c = config_lib.defaults()
  assert c.model_options.dtype is None and c.steps_per_call is None
  filled = resolve.platform_defaults(c, platform, 32)
  assert (filled.model_options.dtype, filled.steps_per_call) == (dtype, steps)
  assert c.model_options.dtype is None and c.steps_per_call is None  # a copy: c is as it was
  c = config_lib.with_values(c, {"model_options.dtype": "float32", "steps_per_call": 2})
  filled = resolve.platform_defaults(c, platform, 32)
  assert (filled.model_options.dtype, filled.steps_per_call) == ("float32", 2)


def test_the_run_records_the_filled_defaults_on_cpu(data_dir):
  """config.json holds what the run ran with; on CPU that is what it held before the defaults
  became the platform's (float32, the experiment's steps_per_call), so old runs resume."""
  run = resolve.resolve(lenet(data_dir, num_steps=4), devices=jax.devices()[:1])
  assert run.config["model_options"]["dtype"] == "float32"
  assert run.config["steps_per_call"] == 8 and run.steps.steps_per_call == 8
  run = resolve.resolve(config_lib.with_values(lenet(data_dir), {"steps_per_call": None}),
                        devices=jax.devices()[:1])
  assert run.config["steps_per_call"] == 1 and run.model.dtype == "float32"


def test_the_next_run_of_a_process_reuses_the_opened_splits(data_dir):
  """A sweep worker's runs decode the data once; where the seed picks the images, it doesn't."""
  one = jax.devices()[:1]
  first, second = (resolve.resolve(lenet(data_dir, seed=s), devices=one) for s in (0, 1))
  assert second.train_data is first.train_data and second.eval_data is first.eval_data
  few = [resolve.resolve(lenet(data_dir, seed=s, **{"data.train_per_class": 5}), devices=one)
         for s in (0, 1)]
  assert few[0].train_data is not few[1].train_data
  assert len(few[0].train_data) == 50


def test_the_optimisation_keys_reach_the_run(data_dir):
  c = lenet(data_dir, **{"grad_accum_steps": 4, "ema.decay": 0.99, "ema.warmup": True,
                         "optimizer.name": "lars", "schedule.name": "polynomial"})
  run = resolve.resolve(c, devices=jax.devices()[:1])
  assert (run.grad_accum_steps, run.ema_decay, run.ema_warmup) == (4, 0.99, True)
  assert run.init_from_ema is False
