"""Per-example predictions are evaluation's, example by example: on 8 devices, with the last
batch padded, in the split's order. (After training: tests/train/test_loop.py.)"""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from cnnjax.data import splits
from cnnjax.errors import UserError
from cnnjax.train import calls, loop, predict, state as state_lib
from cnnjax.train.resolve import resolve
from tests.train.test_loop import tiny_config


def test_the_logits_of_every_example_give_back_evaluations_metrics(data_dir):
  config = tiny_config(data_dir, eval_batch_size=16)  # 8 devices: 50 examples, 14 rows padded
  config.data.train_split, config.data.eval_split = "train[:64]", "test[:50]"
  run = resolve(config)
  assert run.mesh.devices.size == 8
  rng = np.random.default_rng(0)  # any weights will do (compiling the init would take longer)
  state = state_lib.create(jax.tree.map(
      lambda s: rng.normal(0.0, 0.2, s.shape).astype(s.dtype), run.variables), run.tx)
  metrics = loop.run_eval(run, calls.compile_steps(run)[1], state)
  logits, labels = predict.split_logits(run, state)
  assert logits.shape == (50, 10) and logits.dtype == np.float32
  assert (labels == splits.arrays("mnist5k", "test[:50]", data_dir=data_dir)[1]).all()
  one = predict.split_logits(resolve(config, jax.devices()[:1]), state)[0]
  np.testing.assert_allclose(logits, one, rtol=1e-5, atol=1e-6)  # the sharding changes nothing
  assert np.mean(logits.argmax(-1) == labels) == pytest.approx(metrics["eval/top1"])
  wide = logits.astype(np.float64)
  loss = logsumexp(wide, axis=-1) - wide[np.arange(50), labels]
  assert loss.mean() == pytest.approx(metrics["eval/loss"], rel=1e-5)


def test_predicting_without_a_checkpoint_is_evaluations_error(tmp_path, data_dir):
  with pytest.raises(UserError, match="no checkpoint"):
    predict.predict(tiny_config(data_dir), str(tmp_path))
