"""Reading weights files, recognising torchvision's, and the errors a user can meet."""

import sys

import numpy as np
import pytest

from cnnjax.errors import UserError
from cnnjax.models import registry
from cnnjax.transfer import convert, pretrained

torch = pytest.importorskip("torch")

NAMES = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
         "vgg19_bn", "googlenet", "inception_v3", "resnet18", "resnet34", "resnet50",
         "resnet101", "resnet152"]


def test_every_torchvision_model_is_registered_with_weights():
  assert sorted(convert.names()) == sorted(NAMES)
  for name in NAMES:
    registry.get_spec(name)
    weights = convert.torchvision_weights(name)
    assert weights and all(w.file.endswith(".pth") and 50 < w.top1 < 90 for w in weights)


def test_unknown_model_lists_close_matches():
  with pytest.raises(UserError, match=r"unknown torchvision model 'resnet19'\. Did you mean"):
    convert.torchvision_weights("resnet19")
  with pytest.raises(UserError, match=r"model 'resnet20' has no torchvision weights\. Valid"):
    convert.torchvision_weights("resnet20")


def test_recognises_torchvision_files_by_name_or_hash():
  assert convert.identify("resnet50", "/cache/resnet50-11ad3fa6.pth", "00").tag == "IMAGENET1K_V2"
  v1 = convert.identify("resnet50", "/tmp/renamed.pth", "0676ba61" + "0" * 56)
  assert v1.tag == "IMAGENET1K_V1" and v1.preprocessing.resize == 256
  assert convert.identify("resnet50", "/tmp/mine.pth", "ff" * 32) is None


def test_read_unwraps_training_checkpoints(tmp_path):
  path = str(tmp_path / "ckpt.pt")
  torch.save({"epoch": 3, "state_dict": {"module.fc.bias": torch.arange(3.0),
                                         "module.fc.weight": torch.ones(3, 2).half()}}, path)
  state_dict = convert.read_state_dict(path)
  assert list(state_dict) == ["fc.bias", "fc.weight"]
  assert state_dict["fc.weight"].dtype == np.float32


@pytest.mark.parametrize("name, content, match", [
    ("missing.pth", None, "does not exist"),
    ("w.h5", b"x", r"unknown suffix '\.h5'\. Valid choices: \.pth, \.pt, \.safetensors"),
    ("w.pth", b"not a zip", r"can't read .* with torch.load\(weights_only=True\)"),
    ("w.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}", "can't read .* as safetensors"),
])
def test_read_errors(tmp_path, name, content, match):
  path = tmp_path / name
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(UserError, match=match):
    convert.read_state_dict(str(path))


def test_a_pickled_list_is_not_a_state_dict(tmp_path):
  torch.save([torch.ones(2)], tmp_path / "w.pth")
  with pytest.raises(UserError, match="holds a list, not a state dict"):
    convert.read_state_dict(str(tmp_path / "w.pth"))


def test_pth_needs_torch_safetensors_does_not(tmp_path, monkeypatch):
  (tmp_path / "w.pth").write_bytes(b"x")
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
  with pytest.raises(UserError, match=r"needs PyTorch.*\.safetensors"):
    convert.read_state_dict(str(tmp_path / "w.pth"))


def test_weights_tag_is_checked(tmp_path):
  path = tmp_path / "resnet50-0676ba61.pth"  # torchvision's V1 file name
  torch.save({"fc.bias": torch.zeros(3)}, path)
  with pytest.raises(UserError, match="is torchvision's resnet50 IMAGENET1K_V1 file, not "
                                      "IMAGENET1K_V2"):
    convert.convert_file("resnet50", str(path), str(tmp_path / "out"), weights_tag="IMAGENET1K_V2")
  with pytest.raises(UserError, match=r"'IMAGENET1K_V3'. Did you mean"):
    convert.convert_file("resnet50", str(path), str(tmp_path / "out"), weights_tag="IMAGENET1K_V3")


def test_load_pretrained_needs_a_converted_directory(tmp_path):
  with pytest.raises(UserError, match="holds no pretrained.json"):
    pretrained.load_pretrained(str(tmp_path))
