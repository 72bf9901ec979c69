"""The user's path end to end: torchvision weights on disk → convert → fine-tune on a folder of
their own images through the training loop, with the weights' own preprocessing."""

import jax
import numpy as np
import pytest
from PIL import Image

from cnnjax import checkpoint
from cnnjax.errors import UserError
from cnnjax.train import loop, resolve
from cnnjax.transfer import convert
from tests.train.test_loop import tiny_config

torch = pytest.importorskip("torch")
tv = pytest.importorskip("torchvision")


pytestmark = pytest.mark.e2e  # converted weights trained and evaluated for real

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """A random torchvision resnet18 saved as .pth and converted, with a small crop (64)."""
  root = tmp_path_factory.mktemp("weights")
  torch.manual_seed(0)
  torch.save(tv.models.resnet18(weights=None).state_dict(), root / "resnet18.pth")
  convert.convert_file("resnet18", str(root / "resnet18.pth"), str(root / "out"), resize=72,
                       crop=64)
  return str(root / "out")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  root = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(1)
  for c, name in enumerate(("bright", "dark")):
    (root / name).mkdir()
    for i in range(10):
      pixels = np.clip(rng.normal(200 - 150 * c, 20, (40, 50, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(root / name / f"{i}.png")
  (root / "dark" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  return str(root)


def test_linear_probe_from_converted_weights_on_an_image_folder(tmp_path, converted, photos):
  config = tiny_config(None, model="resnet18", dataset=f"folder:{photos}", num_steps=3,
                       batch_size=4, eval_batch_size=8, init_from=converted,
                       init_skip=("head",), num_classes=2)
  config.finetune.mode = "linear_probe"
  s = resolve.resolve(config, devices=jax.devices()[:1])
  assert s.input_shape == (1, 64, 64, 3)  # the weights' crop, not the dataset's or the model's
  np.testing.assert_allclose(s.train_data.mean, (0.485, 0.456, 0.406))
  assert len(s.train_data) == 16 and len(s.eval_data) == 4  # 20 images, corrupt one skipped
  final = loop.train(config, str(tmp_path), devices=jax.devices()[:1])
  assert 0.0 <= final["eval/top1"] <= 1.0
  after = checkpoint.latest_variables(str(tmp_path))
  before = convert.pretrained.read(converted)[1]
  np.testing.assert_array_equal(before["params"]["layer4_1"]["conv2"]["kernel"],
                                after["params"]["layer4_1"]["conv2"]["kernel"])
  np.testing.assert_array_equal(before["batch_stats"]["bn1"]["mean"],
                                after["batch_stats"]["bn1"]["mean"])
  assert after["params"]["fc"]["kernel"].shape == (512, 2)


def test_weights_of_another_model_are_refused(tmp_path, converted, photos):
  config = tiny_config(None, model="resnet34", dataset=f"folder:{photos}", init_from=converted)
  with pytest.raises(UserError, match="holds resnet18 weights but config.model='resnet34'"):
    resolve.resolve(config, devices=jax.devices()[:1])


def test_eval_mode_evaluates_converted_weights_directly(tmp_path, converted, photos):
  config = tiny_config(None, model="resnet18", dataset=f"folder:{photos}", eval_batch_size=8,
                       init_from=converted)
  config.num_classes = 1000  # the converted ImageNet head, evaluated as it is
  result = loop.evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  assert result["step"] == 0 and 0.0 <= result["eval/top5"] <= 1.0
