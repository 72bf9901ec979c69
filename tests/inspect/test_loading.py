"""The sources ``visualize`` reads: training runs (old configs too) and pretrained weights."""

import json

import jax
import numpy as np
import pytest

from cnnjax.errors import UserError
from cnnjax.inspect import graph, loading, pictures
from cnnjax.transfer import pretrained, shapes
from cnnjax.data.preprocessing import Preprocessing


def test_an_old_config_gets_the_new_keys_defaults(tmp_path):
  saved = {"model": "lenet5", "data": {"max_shift": 2}, "schedule": {"decay_epochs": [3, 6]},
           "model_options": {"original": True}}
  (tmp_path / "config.json").write_text(json.dumps(saved))
  c = loading.run_config(str(tmp_path))
  assert c.model == "lenet5" and c.data.max_shift == 2 and c.model_options.original
  assert c.schedule.decay_epochs == (3, 6)
  assert c.data.train_split == "train" and c.batch_size > 0  # from experiments/base.py


def test_unknown_directories_fail_in_one_line(tmp_path):
  with pytest.raises(UserError, match="neither of: training run"):
    loading.load(str(tmp_path))
  (tmp_path / "not_an_image.png").write_text("hello")
  with pytest.raises(UserError, match="can't be read as an image"):
    loading.read_image(str(tmp_path / "not_an_image.png"))


def test_pretrained_weights_directory(tmp_path):
  ref = shapes.reference("resnet20", 10, {})
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape) + (
      1.0 if s.shape and len(s.shape) == 1 else 0.0)).astype(np.float32), ref)
  prep = Preprocessing(resize=36, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
  out = str(tmp_path / "weights")
  pretrained.write(out, model="resnet20", num_classes=10, options={}, variables=variables,
                  preprocessing=prep, source={"test": True})
  item = loading.load(out)
  assert (item.name, item.input_shape, item.dataset) == ("resnet20", (32, 32, 3), None)
  raw = rng.integers(0, 256, (1, 40, 48, 3), dtype=np.uint8)
  x = np.asarray(item.preprocess(raw))
  shown = np.asarray(item.display(raw))
  assert x.shape == shown.shape == (1, 32, 32, 3) and 0 <= shown.min() <= shown.max() <= 1
  g = graph.trace(item.model, item.variables, (1, 32, 32, 3))
  logits, _ = graph.forward(g, item.variables, x)
  np.testing.assert_allclose(logits, item.model.apply(item.variables, x), rtol=1e-4, atol=1e-4)
  with pytest.raises(UserError, match="pass --image"):
    pictures.write_all(item, str(tmp_path / "inspect"))
