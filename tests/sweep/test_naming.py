"""Variant names, in-process: the keys a point changes from the base config, spelt stably."""

import ml_collections
import pytest

from cnnjax import config as config_lib
from cnnjax.sweep import naming, product


@pytest.fixture(scope="module")
def lenet():
  return config_lib.load("experiments/lenet_mnist.py")


def _base():
  return ml_collections.ConfigDict({
      "batch_size": 128, "optimizer": {"learning_rate": 0.1, "decay": 0.0},
      "model_options": {"pool": "max", "widths": (6, 16)}, "schedule": {"decay": 0.0}})


def test_values_are_spelt_short_and_stable():
  assert naming.value_text(1e-3) == "0.001" and naming.value_text(2.5e-4) == "0.00025"
  assert naming.value_text(1e9) == "1e+09" and naming.value_text(0.1) == "0.1"
  assert naming.value_text((6, 16)) == "6-16" and naming.value_text([]) == "none"
  assert naming.value_text(True) == "True" and naming.value_text("avg") == "avg"


def test_a_name_is_the_keys_that_differ_from_the_base():
  base = _base()
  points = [(None, {"optimizer.learning_rate": 0.1, "model_options.pool": "avg"}),
            (None, {"optimizer.learning_rate": 0.01, "model_options.pool": "max"}),
            (None, {"model_options.widths": [6, 16]}),  # a list equal to the base's tuple
            (None, {"model_options.widths": [8, 32]}),
            (None, {"optimizer.decay": 0.5, "schedule.decay": 0.5}),  # clashing last parts
            ("my name/1", {"batch_size": 7})]
  assert naming.names(points, base) == [
      "pool=avg", "learning_rate=0.01", "base", "widths=8-32",
      "optimizer.decay=0.5,schedule.decay=0.5", "my_name_1"]


def test_names_are_the_keys_that_differ_and_stable(lenet):
  points = product({"model_options.activation": ["relu", "gelu"],
                   "optimizer.learning_rate": [2e-3, 0.01]}).points
  names = naming.names(points, lenet)
  # lenet_mnist's learning rate is 2e-3: the points that keep it don't name it.
  assert names == ["activation=relu", "activation=relu,learning_rate=0.01", "activation=gelu",
                   "activation=gelu,learning_rate=0.01"]
  assert naming.names(points, lenet) == names
  assert naming.short_keys(["optimizer.decay", "schedule.decay_epochs", "data.decay"]) == {
      "optimizer.decay": "optimizer.decay", "schedule.decay_epochs": "decay_epochs",
      "data.decay": "data.decay"}
  assert naming.names([(None, {"batch_size": 128})], lenet) == ["base"]
  assert naming.names([(None, {"init_from": "/a/b c"})], lenet) == ["init_from=_a_b_c"]
