"""torchvision state dict on disk → convert → load_pretrained → the same logits as torchvision.

The per-family parity tests check every converter on in-memory state dicts; this goes the user's
way: .pth and .safetensors files, the converter function and the CLI, pretrained.json, and the
weights' own preprocessing (GoogLeNet's transform_input included) on PIL images.
"""

import hashlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import cnnjax
from cnnjax.errors import UserError
from cnnjax.transfer import convert

torch = pytest.importorskip("torch")
tv = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.e2e  # torchvision files converted and run for real

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST_COMPILE = {"xla_backend_optimization_level": 0}
RESIZE, CROP = 72, 64  # small inputs keep CPU time down; resize > crop exercises the crop

BUILDERS = {
    "resnet18": lambda: tv.models.resnet18(weights=None),
    "vgg11_bn": lambda: tv.models.vgg11_bn(weights=None),
    # As torchvision builds it for its ImageNet weights: aux heads in the file, transform_input on.
    "googlenet": lambda: tv.models.googlenet(weights=None, aux_logits=True, transform_input=True,
                                             init_weights=True),
}


def _calibrated(net):
  """Random BN affine and running stats from one batch, perturbed: every BN tensor matters and
  activations keep unit scale through deep random nets."""
  bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for m in bns:
      m.weight.uniform_(0.5, 1.5)
      m.bias.normal_(0.0, 0.2)
      m.momentum = 1.0
    net.train()
    net(torch.randn(2, 3, CROP, CROP))
    for m in bns:
      m.momentum = 0.1
      m.running_mean.add_(0.1 * torch.randn_like(m.running_mean))
      m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25))
    # Unit-scale logits, so that the absolute 1e-4 bound is a relative one (random heads give
    # logits of std ~20, where float32 rounding alone reaches 1e-4).
    net.eval()
    head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    scale = net(torch.randn(2, 3, CROP, CROP)).std()
    head.weight.div_(scale)
    head.bias.div_(scale)
  return net


def _images():
  rng = np.random.default_rng(0)
  return [Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)) for h, w in ((90, 75),
                                                                                  (80, 120))]


def _save(net, path):
  return _save_dict(net.state_dict(), path)


def _save_dict(state_dict, path):
  state_dict = {k: v.detach().clone().contiguous() for k, v in state_dict.items()}
  if path.endswith(".safetensors"):
    safetensors_torch.save_file(state_dict, path)
  else:
    torch.save(state_dict, path)
  return path


def _logits(model, variables, x):
  """Eval-mode logits; XLA optimisation level 0 roughly halves the CPU compile time."""
  run = jax.jit(lambda v, x: model.apply(v, x, train=False))
  return np.asarray(run.lower(variables, x).compile(FAST_COMPILE)(variables, x))


def test_pth_and_safetensors_hold_the_same_state_dict(tmp_path):
  state_dict = tv.models.resnet18(weights=None).state_dict()
  pth = convert.read_state_dict(_save_dict(state_dict, str(tmp_path / "w.pth")))
  st = convert.read_state_dict(_save_dict(state_dict, str(tmp_path / "w.safetensors")))
  assert pth.keys() == st.keys() == state_dict.keys()
  assert all(np.array_equal(pth[k], st[k]) and np.array_equal(pth[k], state_dict[k].numpy())
             for k in pth)


# The file types take turns; reading them is checked above, once, on resnet18. The resnet18
# file has the name torchvision downloads its IMAGENET1K_V1 weights to, so it is recognised.
@pytest.mark.parametrize("name, file", [("resnet18", "resnet18-f37072fd.pth"),
                                        ("vgg11_bn", "w.safetensors"), ("googlenet", "w.pth")])
def test_file_to_torchvision_logits(name, file, tmp_path):
  torch.manual_seed(0)
  net = _calibrated(BUILDERS[name]())
  path = _save(net, str(tmp_path / file))
  info = convert.convert_file(name, path, str(tmp_path / "out"), resize=RESIZE, crop=CROP)
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  tag = "IMAGENET1K_V1" if name == "resnet18" else None
  assert info["source"] == {"file": file, "sha256": digest, "torchvision_weights": tag}
  assert info["num_classes"] == 1000
  assert info["options"] == ({"aux_logits": False} if name == "googlenet" else {})
  with open(tmp_path / "out" / "pretrained.json") as f:
    assert json.load(f) == info

  model, variables, pre = cnnjax.load_pretrained(str(tmp_path / "out"))
  assert (pre.resize, pre.crop, pre.transform_input) == (RESIZE, CROP, name == "googlenet")
  images = _images()
  transform = tv.transforms._presets.ImageClassification(crop_size=CROP, resize_size=RESIZE)
  with torch.no_grad():  # googlenet applies transform_input itself; ours is in ``pre``
    want = net(torch.stack([transform(im) for im in images])).numpy()
  got = _logits(model, variables, pre(images))
  assert 0.3 < want.std() < 3
  assert np.abs(got - want).max() <= 1e-4


@pytest.mark.e2e
def test_cli_converts_and_reports_errors_in_one_line(tmp_path):
  torch.manual_seed(0)
  net = tv.models.resnet18(weights=None, num_classes=10).eval()
  st = _save(net, str(tmp_path / "w.safetensors"))
  cli = [sys.executable, "-m", "cnnjax.transfer"]
  env = {**os.environ, "PYTHONPATH": ROOT}
  run = lambda *args: subprocess.run([*cli, *args], cwd=ROOT, env=env, capture_output=True,
                                     text=True, timeout=300)
  ok = run("--model=resnet18", f"--weights={st}", f"--out={tmp_path / 'out'}")
  assert ok.returncode == 0, ok.stderr
  assert "num_classes=10" in ok.stdout
  model, variables, _ = cnnjax.load_pretrained(str(tmp_path / "out"))
  x = np.random.default_rng(0).standard_normal((2, 32, 32, 3), np.float32)
  with torch.no_grad():
    want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  assert np.abs(_logits(model, variables, x) - want).max() <= 1e-4

  bad = run("--model=resnet19", f"--weights={st}", f"--out={tmp_path / 'x'}")
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert bad.stderr.startswith("error: unknown torchvision model 'resnet19'. Did you mean ")
  assert len(bad.stderr.strip().splitlines()) == 1 and "'resnet18'" in bad.stderr
  old_name = subprocess.run([sys.executable, "-m", "cnnjax.convert_torchvision", "--model=resnet19",
                             f"--weights={st}", f"--out={tmp_path / 'x'}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
  assert old_name.returncode == 2 and old_name.stderr == bad.stderr  # the old command still works
  with pytest.raises(UserError, match="--overwrite"):
    convert.convert_file("resnet18", st, str(tmp_path / "out"))


def test_misfit_state_dict_names_the_paths(tmp_path):
  torch.manual_seed(0)
  state_dict = tv.models.resnet18(weights=None).state_dict()
  state_dict = {k: v.numpy() for k, v in state_dict.items() if not k.startswith("layer4.1.")}
  state_dict["layer1.0.conv1.weight"] = np.zeros((64, 64, 1, 1), np.float32)
  with pytest.raises(UserError) as e:
    convert.convert("resnet34", state_dict)
  message = str(e.value)
  assert message.startswith("the state dict does not fit resnet34 with num_classes=1000: "
                            "layer1_0/conv1/kernel is float32[1, 1, 64, 64] in the converted "
                            "weights, float32[3, 3, 64, 64] in the model; ")
  # resnet34 has 3, 4, 6, 3 blocks; the file 2, 2, 2, 1: whole blocks are named once.
  assert "; layer1_2 (10 leaves) is not in the converted weights; layer2_2 (10 leaves) " in message
  assert message.endswith("; layer3_5 (10 leaves) is not in the converted weights (and 2 more)")
  assert "is in the converted weights, not in" not in message
  with pytest.raises(UserError, match="unexpected torchvision VGG module 'conv1'"):
    convert.convert("vgg11", state_dict)
  with pytest.raises(UserError, match="no auxiliary heads"):
    convert.convert("resnet18", state_dict, aux_logits=True)
