"""Declaring and expanding sweeps: combinators, names, every check before anything runs."""

import pytest

from cnnjax import config as config_lib
from cnnjax.errors import UserError
from cnnjax.sweep import Sweep, chain, product, spec, variants, zipped
from experiments import resnet_cifar

ABLATIONS = "experiments/ablations.py"


@pytest.fixture(scope="module")
def lenet():
  return config_lib.load("experiments/lenet_mnist.py")


def test_product_zipped_chain_and_variants(lenet):
  grid = product({"model_options.activation": ["relu", "elu"], "optimizer.learning_rate": [1e-3, 2e-3]})
  assert len(grid.points) == 4
  assert grid.points[1][1] == {"model_options.activation": "relu", "optimizer.learning_rate": 2e-3}
  pairs = zipped({"model_options.activation": ["relu", "elu"], "batch_size": [64, 256]})
  assert [o for _, o in pairs.points] == [{"model_options.activation": "relu", "batch_size": 64},
                                          {"model_options.activation": "elu", "batch_size": 256}]
  both = chain(pairs, {"model_options.pool": ["avg"]})
  assert len(both.points) == 3
  named = variants({"small": {"batch_size": 32}, "big": {"batch_size": 512}})
  plan = spec.expand(Sweep(named, seeds=(0, 1, 2)), lenet)
  assert [r.workdir for r in plan.trials][:4] == ["small/seed=0", "small/seed=1", "small/seed=2",
                                                "big/seed=0"]
  assert plan.baseline == "small" and plan.variants["big"] == {"batch_size": 512}


def test_config_hash_differs_by_seed_and_value_only(lenet):
  plan = spec.expand(Sweep({"model_options.activation": ["relu", "elu"]}, seeds=(0, 1)), lenet)
  hashes = [r.config_hash for r in plan.trials]
  assert len(set(hashes)) == 4
  again = spec.expand(Sweep({"model_options.activation": ["relu", "elu"]}, seeds=(0, 1)), lenet)
  assert [r.config_hash for r in again.trials] == hashes


BAD = [
    (Sweep({"model_options.activaton": ["relu"]}),
     r"sweep key 'model_options.activaton' is not in the config. Did you mean "
     r"'model_options.activation'\?"),
    (Sweep({"model_options.dropout": [0.5, 1.5]}),
     r"sweep point 'dropout=1.5': config.model_options.dropout must be in \[0, 1\)"),
    (Sweep({"seed": [1, 2]}), r"'seed' is not an axis"),
    (Sweep({"model_options.activation": ["swish"]}), r"unknown activation 'swish'"),
    (Sweep({"model_options.activation": ["relu"]}, seeds=(1, 1)), r"seeds must be distinct"),
    (Sweep({"model_options.activation": ["relu"]}, baseline="gelu"),
     r"unknown baseline variant 'gelu'"),
    (Sweep({"batch_size": ["many"]}), r"sweep value batch_size='many' doesn't fit the config"),
    (Sweep({"model_options.activation": "relu"}), r"must list its values"),
    (Sweep(chain({"batch_size": [64]}, {"batch_size": [64]})), r"both named 'batch_size=64'"),
]


@pytest.mark.parametrize("sweep,message", BAD, ids=[m[:25] for _, m in BAD])
def test_every_bad_sweep_is_one_clear_error(lenet, sweep, message):
  with pytest.raises(UserError, match=message):
    spec.expand(sweep, lenet)


def test_a_command_line_override_of_an_axis_is_refused(lenet):
  with pytest.raises(UserError, match=r"--config.model_options.pool is also a sweep axis"):
    spec.expand(Sweep({"model_options.pool": ["max", "avg"]}), lenet, ["model_options.pool"])


@pytest.mark.parametrize("name", ["activation", "pooling", "dropout", "batchnorm",
                                  "depth_residual", "head", "recipe"])
@pytest.mark.parametrize("smoke", [False, True])
def test_every_course_ablation_expands_and_checks(name, smoke):
  arg = f"{name},smoke" if smoke else name
  config = config_lib.load(f"{ABLATIONS}:{arg}")
  plan = spec.expand(spec.load(f"{ABLATIONS}:{arg}"), config)
  seeds = {r.seed for r in plan.trials}
  assert len(seeds) == (2 if smoke else 5)
  assert len(plan.variants) >= 2 and len(plan.trials) == len(plan.variants) * len(seeds)


def test_the_depth_residual_variants_are_paper_names():
  plan = spec.expand(spec.load(f"{ABLATIONS}:depth_residual"),
                     config_lib.load(f"{ABLATIONS}:depth_residual"))
  assert list(plan.variants) == ["resnet20", "plain20", "resnet32", "plain32", "resnet44",
                                 "plain44", "resnet56", "plain56"]
  assert plan.variants["plain44"] == {"model": "resnet44", "model_options.residual": False}


@pytest.mark.parametrize("smoke", [False, True])
def test_the_recipe_ablation_switches_each_modern_part_on_alone(smoke):
  """He et al.'s ResNet-20, then each part of resnet_cifar.py:modern alone, then all of them;
  the smoke form only shortens the cosine part's warm-up to fit its 2 epochs."""
  arg = "recipe,smoke" if smoke else "recipe"
  config = config_lib.load(f"{ABLATIONS}:{arg}")
  plan = spec.expand(spec.load(f"{ABLATIONS}:{arg}"), config)
  assert (config.model, config.schedule.name, config.label_smoothing) == ("resnet20", "step", 0.0)
  assert config.dataset == ("mnist5k" if smoke else "cifar10")
  assert plan.baseline == "he2016" and plan.variants["he2016"] == {}
  assert list(plan.variants) == ["he2016", *resnet_cifar.MODERN, "all"]
  assert plan.variants["cutmix"] == {"cutmix.alpha": 1.0}
  assert plan.variants["cosine"]["schedule.warmup_epochs"] == (0.25 if smoke else 5.0)
  assert len(plan.variants["all"]) == sum(map(len, resnet_cifar.MODERN.values()))


def test_an_experiment_without_get_sweep_is_an_error():
  with pytest.raises(UserError, match=r"defines no get_sweep"):
    spec.load("experiments/lenet_mnist.py")
