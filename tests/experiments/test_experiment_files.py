"""Every experiment file: loads for each of its models, validates, and its smoke variant trains
through launch.py on the embedded data with a falling loss (one model per architecture)."""

import glob
import json
import os

import jax
import jax.numpy as jnp
import pytest

from cnnjax import config as config_lib, models
from cnnjax.train import resolve
from experiments import resnet_cifar
from tests.test_launch import ROOT, launch

ZOO = {
    "alexnet_imagenet.py": ["alexnet", "alexnet,original"],
    "zfnet_imagenet.py": ["zfnet"],
    "vgg_imagenet.py": ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
                        "vgg19_bn"],
    "googlenet_imagenet.py": ["googlenet", "googlenet,original"],
    "inception_v3_imagenet.py": ["inception_v3"],
    "resnet_imagenet.py": ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                           "resnet50,original"],
    "resnet_cifar.py": ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                        "resnet20,modern"],
    "lenet_mnist.py": [None, "original"],
}


def test_every_registered_model_has_an_experiment():
  covered = {arg.split(",")[0] for args in ZOO.values() for arg in args
             if arg and arg != "original"} | {"lenet5"}
  assert covered == set(models.names())
  files = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "experiments", "*.py"))}
  assert set(ZOO) <= files


@pytest.mark.parametrize("path,arg", [(p, a) for p, args in ZOO.items() for a in args])
def test_experiment_loads_and_validates(path, arg):
  spec = os.path.join(ROOT, "experiments", path) + (f":{arg}" if arg else "")
  natural = config_lib.load(spec)
  config_lib.validate(natural)
  assert natural.model == ("lenet5" if path == "lenet_mnist.py" else arg.split(",")[0])
  if path != "lenet_mnist.py":
    smoke = config_lib.load(f"{spec},smoke")
    config_lib.validate(smoke)
    assert smoke.dataset == "mnist5k" and smoke.num_steps <= 10


@pytest.mark.e2e
def test_bad_experiment_argument_is_one_line(tmp_path):
  done = launch("--config=experiments/vgg_imagenet.py:vgg16,smok", f"--workdir={tmp_path}")
  assert done.returncode == 2 and "Traceback" not in done.stderr
  assert "unknown experiment argument 'smok'" in done.stderr


# One model per architecture (the smallest of each family): a few real steps through launch.py.
SMOKE = [("lenet_mnist.py", None), ("alexnet_imagenet.py", "alexnet"),
         ("zfnet_imagenet.py", "zfnet"), ("vgg_imagenet.py", "vgg11_bn"),
         ("googlenet_imagenet.py", "googlenet"), ("inception_v3_imagenet.py", "inception_v3"),
         ("resnet_imagenet.py", "resnet18"), ("resnet_cifar.py", "resnet20")]


@pytest.mark.e2e
@pytest.mark.parametrize("path,arg", SMOKE, ids=[p for p, _ in SMOKE])
def test_every_architecture_trains_on_the_embedded_data(tmp_path, data_dir, path, arg):
  spec = f"--config=experiments/{path}" + (f":{arg},smoke" if arg else "")
  extra = ["--config.num_steps=8", "--config.log_every_steps=1", "--config.eval_every_epochs=0",
           "--config.data.eval_split=test[:64]"] if arg is None else []
  done = launch(spec, f"--workdir={tmp_path}", f"--config.data.data_dir={data_dir}", *extra)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert len(losses) == 8
  assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses


def test_the_mlperf_recipe_resolves_to_its_schedule_and_optimizer(data_dir):
  """The ImageNet recipe's numbers (no data opened), and its smoke form resolved for real."""
  spec = os.path.join(ROOT, "experiments", "resnet_imagenet.py")
  c = config_lib.load(f"{spec}:mlperf")
  resolve.check(c)
  assert (c.model, c.batch_size, c.optimizer.name, c.label_smoothing) == (
      "resnet50", 3200, "lars", 0.1)
  steps = config_lib.Steps.from_config(c, 1_281_167)  # ImageNet-1k's training images
  assert (steps.warmup_steps, steps.total_steps) == (801, 14_814)
  abstract = {"conv": {"kernel": jax.ShapeDtypeStruct((3, 3, 3, 8), "float32")}}
  # pylint: disable-next=protected-access
  schedule, _ = resolve._optimizer(c, steps, abstract, frozenset(), {})  # {}: the config's values
  assert float(schedule(801)) == pytest.approx(11.0)
  assert float(schedule(14_814)) == pytest.approx(1e-4, rel=1e-3)
  middle = (801 + 14_814) // 2  # half-way through the decay: (1 − 1/2)² of the range
  assert float(schedule(middle)) == pytest.approx(1e-4 + (11.0 - 1e-4) * (
      1 - (middle - 801) / (14_814 - 801))**2, rel=1e-4)
  smoke = config_lib.load(f"{spec}:mlperf,smoke")
  smoke.data.data_dir = data_dir
  run = resolve.resolve(smoke, devices=jax.devices()[:1])
  assert run.name == "resnet50" and run.model.dtype == jnp.bfloat16


def test_the_modern_cifar_recipe_is_he_et_al_plus_its_parts():
  """``:modern`` changes exactly the keys of resnet_cifar.MODERN from He et al.'s config, and its
  smoke form keeps the parts (RandAugment, mixing, EMA, drop path train on the embedded data)."""
  spec = os.path.join(ROOT, "experiments", "resnet_cifar.py")
  he, modern = (config_lib.load(f"{spec}:{a}") for a in ("resnet20", "resnet20,modern"))
  changed = {k: config_lib.get_key(modern, k) for k in config_lib.leaf_keys(modern)
             if config_lib.get_key(modern, k) != config_lib.get_key(he, k)}
  want = {k: v for part in resnet_cifar.MODERN.values() for k, v in part.items()}
  assert changed == want
  assert (modern.schedule.name, modern.cutmix.alpha, modern.ema.decay) == ("cosine", 1.0, 0.999)
  assert config_lib.load(f"{spec}:modern").model == "resnet56"
  smoke = config_lib.load(f"{spec}:modern,smoke")
  assert smoke.dataset == "mnist5k" and smoke.num_steps == 8
  assert (smoke.randaugment.num_ops, smoke.mixup.alpha, smoke.model_options.drop_path) == (
      2, 0.1, 0.05)
