"""The loop on real embedded data: it learns, writes its outputs, and evaluates checkpoints."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from cnnjax import checkpoint, config as config_lib, cpu
from cnnjax.errors import UserError
from cnnjax.inspect import loading
from cnnjax.train import loop, predict
from tests.train.test_loop_faults import read_state, rows

pytestmark = pytest.mark.e2e  # whole training runs, in-process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_config(data_dir, **overrides):
  c = config_lib.load(os.path.join(ROOT, "experiments/lenet_mnist.py"))
  c.data.data_dir = data_dir
  c.num_steps = 60
  c.log_every_steps = 10
  c.eval_every_epochs = 0.0
  c.checkpoint_every_steps = 30
  return config_lib.with_values(c, overrides)


@pytest.mark.jax_lines
def test_lenet_learns_and_writes_everything(tmp_path, data_dir, capfd):
  workdir = str(tmp_path / "run")
  final = loop.train(tiny_config(data_dir), workdir, devices=jax.devices()[:1])
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  train_losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert len(train_losses) == 6
  assert train_losses[-1] < 0.5 * train_losses[0]
  assert final["eval/top1"] > 0.8  # 60 steps of LeNet-5 on 1,000 real test digits
  assert 0 <= final["eval/top5"] <= 1 and final["eval/top5"] >= final["eval/top1"]
  assert all(r["train/images_per_sec"] > 0 for r in rows[1:] if "train/images_per_sec" in r)
  for name in ("config.json", "curves.png", "checkpoints"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["30", "60"]
  # --mode=eval restores the newest checkpoint and reproduces the final metrics.
  again = loop.evaluate(tiny_config(data_dir), workdir, devices=jax.devices()[:1])
  assert again["step"] == 60 and again["eval/top1"] == final["eval/top1"]
  # ... and so do its per-example predictions, and a quiet rerun of the finished run; silently
  capfd.readouterr()
  predicted = predict.predict(tiny_config(data_dir), workdir, devices=jax.devices()[:1])
  assert predicted.step == 60 and len(predicted.labels) == 1000
  assert np.mean(predicted.predicted == predicted.labels) == pytest.approx(final["eval/top1"])
  rerun = loop.train(tiny_config(data_dir), workdir, devices=jax.devices()[:1], quiet=True)
  assert rerun["eval/top1"] == final["eval/top1"]
  printed = capfd.readouterr().err
  assert "resuming from" not in printed and "step " not in printed, printed


def test_evaluate_without_checkpoint_is_a_clear_error(tmp_path, data_dir):
  with pytest.raises(UserError, match="no checkpoint"):
    loop.evaluate(tiny_config(data_dir), str(tmp_path), devices=jax.devices()[:1])


def test_bad_config_fails_before_compiling(tmp_path, data_dir):
  with pytest.raises(UserError, match="config.num_steps must be positive"):
    loop.train(tiny_config(data_dir, num_steps=0), str(tmp_path), devices=jax.devices()[:1])
  with pytest.raises(UserError, match="model 'lenet5' takes no option 'shortcut'"):
    c = tiny_config(data_dir)
    c.model_options.shortcut = "B"
    loop.train(c, str(tmp_path), devices=jax.devices()[:1])


def test_resuming_with_another_batch_size_is_refused(tmp_path, data_dir):
  loop.train(tiny_config(data_dir, num_steps=10), str(tmp_path), devices=jax.devices()[:1])
  with pytest.raises(UserError, match=r"config.batch_size=128, not 64: resuming needs the same"):
    loop.train(tiny_config(data_dir, num_steps=20, batch_size=64), str(tmp_path),
               devices=jax.devices()[:1])


def test_steps_per_call_trains_the_same_run(tmp_path, data_dir):
  """Several steps in one compiled call: the same steps, logs, checkpoints and result."""
  runs = {}
  for k in (1, 4):
    workdir = str(tmp_path / f"k{k}")
    config = tiny_config(data_dir, num_steps=23, log_every_steps=5, checkpoint_every_steps=10,
                         steps_per_call=k)
    with cpu.lowering():  # as launch.py trains: the backend's sums don't depend on the fusion
      final = loop.train(config, workdir, devices=jax.devices()[:1])
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    params = checkpoint_params(os.path.join(workdir, "checkpoints"))
    runs[k] = final, rows, params, sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  (f1, rows1, p1, saved1), (f4, rows4, p4, saved4) = runs[1], runs[4]
  assert saved1 == saved4 == ["10", "20", "23"]
  assert [r["step"] for r in rows4] == [r["step"] for r in rows1] == [5, 10, 15, 20, 23, 23]
  for a, b in zip(rows1, rows4):
    for key in a:
      if key != "train/images_per_sec":
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=f"{key} at {a['step']}")
  np.testing.assert_allclose(f4["eval/loss"], f1["eval/loss"], rtol=1e-5)
  for key in p1:
    np.testing.assert_allclose(p4[key], p1[key], rtol=1e-5, atol=1e-7, err_msg=key)


def checkpoint_params(path):
  """The newest checkpoint's parameters as ``{path: array}``."""
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in
          jax.tree_util.tree_flatten_with_path(checkpoint.latest_variables(path)["params"])[0]}


def test_mixup_cutmix_and_randaugment_resume_bit_identical(tmp_path, data_dir):
  """A run that loses its last checkpoint (as a kill -9 after step 10's would) reruns from step
  10 to the same logs and weights: the stream's RandAugment and mixing draws resume too."""
  config = tiny_config(data_dir, num_steps=20, log_every_steps=5, checkpoint_every_steps=10,
                       **{"mixup.alpha": 0.4, "cutmix.alpha": 1.0, "mixup.prob": 0.8,
                          "randaugment.num_ops": 2, "randaugment.magnitude_std": 0.5})
  workdir, ckpts = str(tmp_path), str(tmp_path / "checkpoints")

  def logged():
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      return [{k: v for k, v in json.loads(l).items() if k != "train/images_per_sec"} for l in f]

  loop.train(config, workdir, devices=jax.devices()[:1])
  straight_rows, straight = logged(), checkpoint_params(ckpts)
  shutil.rmtree(os.path.join(ckpts, "20"))
  loop.train(config, workdir, devices=jax.devices()[:1])
  assert logged() == straight_rows
  resumed = checkpoint_params(ckpts)
  for key in straight:
    np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


def recipe_config(data_dir, **overrides):
  """ResNet-20 on 8×8 digits with every recipe part on: RandAugment, mixup and CutMix (seed 0
  mixes by both before and after step 4's checkpoint), EMA with warm-up, drop path, 2
  micro-batches, LARS with the polynomial schedule."""
  return tiny_config(data_dir, **{
      "model": "resnet20", "model_options.drop_path": 0.2, "data.image_size": 8,
      "randaugment.num_ops": 2, "mixup.alpha": 0.2, "cutmix.alpha": 1.0,
      "data.eval_split": "test[:96]", "batch_size": 16, "grad_accum_steps": 2,
      "ema.decay": 0.9, "ema.warmup": True, "optimizer.name": "lars",
      "optimizer.learning_rate": 2.0, "optimizer.weight_decay": 5e-5,
      "schedule.name": "polynomial", "schedule.power": 2.0, "schedule.warmup_epochs": 0.004,
      "num_steps": 8, "log_every_steps": 2, "checkpoint_every_steps": 4,
      "steps_per_call": 2, **overrides})


def test_resume_with_every_optimisation_part_on_is_bit_identical(tmp_path, data_dir):
  """A kill -9 after the first checkpoint leaves checkpoint 4 and the logs up to step 8 (or
  fewer) on disk: resuming from there ends exactly as the uninterrupted run."""
  devices = jax.devices()[:1]
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  with jax.default_prng_impl("rbg"):  # threefry's init of a ResNet compiles for half a minute
    final = loop.train(recipe_config(data_dir), straight, devices=devices)
    assert {"eval/top1", "eval_ema/top1", "eval_ema/loss"} <= set(final)
    assert final["eval_ema/loss"] != final["eval/loss"]
    shutil.copytree(straight, killed)
    shutil.rmtree(os.path.join(killed, "checkpoints", "8"))
    again = loop.train(recipe_config(data_dir), killed, devices=devices)
  assert again == final
  assert rows(killed) == rows(straight)
  assert any("eval_ema/top1" in r for r in rows(straight))
  a, b = (read_state(w, 8) for w in (straight, killed))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert sorted(a) == ["batch_stats", "ema", "opt_state", "params", "step"]

  # init_from_ema and inspect --ema read the averages, not the weights
  ema = loop.load_init_from(straight, ema=True)
  jax.tree.map(np.testing.assert_array_equal, ema, a["ema"])
  assert not np.array_equal(ema["params"]["fc"]["kernel"], a["params"]["fc"]["kernel"])
  seen = loading.load(straight, ema=True)
  jax.tree.map(np.testing.assert_array_equal, seen.variables, a["ema"])
  assert seen.origin.endswith("EMA weights")

