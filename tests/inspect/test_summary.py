"""Per-layer tables: the course's VGG-16 table, exact counts over the registry, MACs vs XLA."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from cnnjax import models
from cnnjax.errors import UserError
from cnnjax.inspect import summary
from tests.inspect import common

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The course's table: layer, output, weights (biases not counted there).
COURSE_VGG16 = [
    ("input", (224, 224, 3), 0),
    ("conv1_1", (224, 224, 64), 1_728), ("conv1_2", (224, 224, 64), 36_864),
    ("pool1", (112, 112, 64), 0),
    ("conv2_1", (112, 112, 128), 73_728), ("conv2_2", (112, 112, 128), 147_456),
    ("pool2", (56, 56, 128), 0),
    ("conv3_1", (56, 56, 256), 294_912), ("conv3_2", (56, 56, 256), 589_824),
    ("conv3_3", (56, 56, 256), 589_824),
    ("pool3", (28, 28, 256), 0),
    ("conv4_1", (28, 28, 512), 1_179_648), ("conv4_2", (28, 28, 512), 2_359_296),
    ("conv4_3", (28, 28, 512), 2_359_296),
    ("pool4", (14, 14, 512), 0),
    ("conv5_1", (14, 14, 512), 2_359_296), ("conv5_2", (14, 14, 512), 2_359_296),
    ("conv5_3", (14, 14, 512), 2_359_296),
    ("pool5", (7, 7, 512), 0),
    ("fc6", (4096,), 102_760_448), ("fc7", (4096,), 16_777_216), ("fc8", (1000,), 4_096_000),
]

# The zoo's exact parameter counts (each family file's docstring; torchvision's where it has
# the model), 1000 or 10 classes as registered.
PARAMS = {
    "lenet5": 61_706, "alexnet": 61_100_840, "zfnet": 62_357_608,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248, "googlenet": 6_624_904, "inception_v3": 27_161_264,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "resnet20": 269_722, "resnet32": 464_154,
    "resnet44": 658_586, "resnet56": 853_018, "resnet110": 1_727_962,
}
# inception_v3's auxiliary head (27,161,264 - 23,834,568) doesn't run at inference.
NOT_IN_ROWS = {"inception_v3": 3_326_696}


def test_vgg16_rows_are_the_course_table():
  s = common.table("vgg16")
  assert [(r.name, r.shape, r.weights) for r in s.rows] == COURSE_VGG16
  for r in s.rows:
    assert r.activations == math.prod(r.shape)
    assert r.params == r.weights + (r.shape[-1] if r.weights else 0)  # + one bias per output
    assert r.activation_bytes == 4 * r.activations
  assert s.rows[1].activations == 3_211_264 and s.rows[1].params == 1_728 + 64


def test_vgg16_totals():
  t = common.table("vgg16").totals
  assert t["params"] == 138_357_544 and t["non_trainable_params"] == 0
  assert t["activations"] == 15_237_608  # the input + every row once: about 61 MB in float32
  assert t["activation_bytes"] == 60_950_432 and t["activation_bytes_fwd_bwd"] == 121_900_864
  assert t["param_bytes"] == 4 * 138_357_544
  # Not the course's "24M x 4 bytes ~= 93MB": its own rows add up to 15.2M values (docs).
  assert t["activation_bytes"] < 93e6
  assert t["macs"] == 15_470_264_320  # the well-known 15.5 GMACs


@pytest.mark.parametrize("name", models.names())
def test_totals_are_the_zoo_counts(name):
  g = common.traced(name)
  s = summary.of_graph(name, g, models.get_spec(name).num_classes)
  t = s.totals
  # A model registered after this table was written is held to its own eval_shape count.
  expected = PARAMS.get(name) or sum(math.prod(a.shape) for a in jax.tree.leaves(
      g.variables["params"]))
  assert t["params"] == expected
  assert t["params_outside_rows"] == NOT_IN_ROWS.get(name, 0)
  assert sum(r.params for r in s.rows) + t["params_outside_rows"] == t["params"]
  in_rows = sum(r.non_trainable for r in s.rows)  # BatchNorm statistics
  assert in_rows == t["non_trainable_params"] or (name in NOT_IN_ROWS and in_rows < t[
      "non_trainable_params"])
  assert t["activations"] == sum(r.activations for r in s.rows)
  assert t["macs"] >= t["macs_excluding_padding"] > 0
  assert s.rows[0].name == "input" and s.rows[-1].shape == (s.num_classes,)
  assert not g.analysis.approximate  # every primitive had an exact receptive-field rule


def test_lenet_macs_by_hand():
  rows = {r.name: r.macs for r in common.table("lenet5").rows}
  assert rows["conv1"] == 28 * 28 * 6 * (5 * 5 * 1)
  assert rows["conv2"] == 10 * 10 * 16 * (5 * 5 * 6)
  assert rows["fc1"] == 400 * 120 and rows["fc3"] == 84 * 10


@pytest.mark.parametrize("name, size, options", [
    ("lenet5", None, {}),
    ("vgg11", 32, {}),
    ("alexnet", 63, {"original": True}),  # grouped convolutions: in_c / groups per output
])
def test_macs_agree_with_xla_cost_analysis(name, size, options):
  g = common.traced(name, size, **options)
  t = summary.of_graph(name, g, 1000).totals
  model = models.create(name, **options)
  x = jax.ShapeDtypeStruct(g.input_shape, jnp.float32)
  compiled = jax.jit(lambda v, x: model.apply(v, x)).lower(g.variables, x).compile()
  cost = compiled.cost_analysis()
  flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
  # XLA skips the taps on zero padding and adds the element-wise ops (biases, ReLU, pooling).
  assert 1.0 <= flops / (2 * t["macs_excluding_padding"]) < 1.03


def test_json_and_csv():
  s = common.table("lenet5")
  data = json.loads(summary.render(s, "json"))
  assert {"params", "activations", "macs"} <= set(data["totals"])
  assert data["totals"]["params"] == 61_706 and data["totals"]["activations"] == 8_878
  assert data["layers"][1] == {**data["layers"][1], "name": "conv1", "shape": [28, 28, 6],
                               "rf": [5, 5], "jump": [1, 1]}
  lines = summary.render(s, "csv").splitlines()
  assert lines[0].startswith("layer,kind,output") and len(lines) == len(s.rows) + 2
  assert lines[-1].startswith("total,,,8878,61706")
  assert "conv1" in summary.render(s, "table")


def test_bad_input_is_a_user_error():
  with pytest.raises(UserError, match="below vgg16's minimum input size 32"):
    summary.summarize("vgg16", input_size=16)
  with pytest.raises(UserError, match="Valid choices: table, json, csv"):
    summary.render(common.table("lenet5"), "xml")


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "cnnjax.inspect", *args], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=300, check=False)


def test_cli_summarize_and_bad_input():
  ok = _cli("summarize", "--model=lenet5", "--format=json")
  assert ok.returncode == 0, ok.stderr
  assert json.loads(ok.stdout)["totals"]["macs"] == 416_520
  for args, message in [(("summarize", "--model=vgg17"), "unknown model 'vgg17'"),
                        (("visualize", "--model=vgg16"), "not a flag of 'visualize'")]:
    bad = _cli(*args)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and message in bad.stderr
    assert bad.stderr.count("\n") == 1, bad.stderr
