"""ResNet: exact sizes, forward in both modes, every option, shortcut A by hand, torchvision parity.

CPU cost is XLA compiles, so the tests share compiled forwards (one per model, options, mode and
input size) and build variables from ``jax.eval_shape`` instead of running the initialisers,
except where the initial values are the point.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from cnnjax.errors import UserError
from cnnjax.models import layers, registry, resnet
from cnnjax.transfer import tv_resnet

# He et al. 2016, Table 1 / torchvision; §4.2 with option A; option B adds two projections.
COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962,
}
COUNTS_B = {"resnet20": 272_474, "resnet32": 466_906, "resnet44": 661_338,
            "resnet56": 855_770, "resnet110": 1_730_714}
SIZE = 32  # the one input size of the numeric tests (besides the minimum), so compiles are shared
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _key():
  return jax.random.key(0, impl="rbg")  # threefry's per-shape compiles are slow on CPU


def _input(size=SIZE, batch=2, channels=3, seed=1):
  x = np.random.default_rng(seed).standard_normal((batch, size, size, channels))
  return jnp.asarray(x, jnp.float32)


def _count(model):
  shapes = jax.eval_shape(lambda: model.init(_key(), _input(1, batch=1)))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))


def _fill(path, shape):
  """He-scaled normal kernels, unit BN scale and variance, zero biases and means."""
  leaf = path[-1].key
  if leaf == "kernel":
    w = np.random.default_rng(len(path)).standard_normal(shape.shape)
    return (w * np.sqrt(2.0 / math.prod(shape.shape[:-1]))).astype(np.float32)
  return np.full(shape.shape, 1.0 if leaf in ("scale", "var") else 0.0, np.float32)


def _fake_variables(module, x):
  """Variables of the right shapes without running the initialisers."""
  return jax.tree_util.tree_map_with_path(
      _fill, jax.eval_shape(lambda: module.init(_key(), x)))


def _real_init(module, x):
  init = jax.jit(lambda k: module.init(k, x)).lower(_key()).compile(FAST_COMPILE)
  return init(_key())


@functools.cache
def _variables(name, shortcut=None):
  return _fake_variables(registry.create(name, shortcut=shortcut), _input(1, batch=1))


@functools.cache
def _compiled(name, train, size, opts=()):
  model = registry.create(name, **dict(opts))
  run = jax.jit(lambda v, x: model.apply(v, x, train=train,
                                         mutable=["batch_stats", "intermediates"]))
  variables = _variables(name, dict(opts).get("shortcut"))
  return run.lower(variables, _input(size)).compile(FAST_COMPILE)


def _forward(name, variables, x, train=False, **opts):
  """(logits, {'batch_stats', 'intermediates'}) from the shared compiled forward."""
  return _compiled(name, train, x.shape[1], tuple(sorted(opts.items())))(variables, x)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_param_count(name):
  assert _count(registry.create(name)) == COUNTS[name]


@pytest.mark.parametrize("name", sorted(COUNTS_B))
def test_param_count_shortcut_b(name):
  assert _count(registry.create(name, shortcut="B")) == COUNTS_B[name]


def test_original_has_the_same_count():
  assert _count(registry.create("resnet50", original=True)) == COUNTS["resnet50"]


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20"])
@pytest.mark.parametrize("train", [False, True])
def test_forward_at_min_size(name, train):
  spec = registry.get_spec(name)
  logits, _ = _forward(name, _variables(name), _input(spec.min_input_size), train)
  assert logits.shape == (2, spec.num_classes) and logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("name, opts", [
    ("resnet18", dict(activation="leaky_relu", negative_slope=0.1, pool="avg", dtype="bfloat16",
                      zero_init_residual=True)),
    ("resnet20", dict(activation="elu", dtype="bfloat16")),
    ("resnet20", dict(shortcut="B", activation="gelu", zero_init_residual=True)),
])
def test_options_build_and_run(name, opts):
  model = registry.create(name, **opts)
  params = jax.eval_shape(lambda: model.init(_key(), _input(1, batch=1)))["params"]
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  # Train mode at the minimum size: eval mode differs only in BatchNorm, run elsewhere.
  logits, _ = _forward(name, _variables(name, opts.get("shortcut")), _input(1), True, **opts)
  assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()


def test_original_builds():
  # Traced only (a resnet50 compile is costly); the v1 block is checked against torchvision below.
  model = registry.create("resnet50", original=True, activation="gelu")
  logits, _ = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]),
                             _variables("resnet50"), _input())
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32


def test_unknown_shortcut_raises():
  with pytest.raises(UserError, match="shortcut"):
    _count(registry.create("resnet20", shortcut="C"))


@pytest.mark.parametrize("name, shapes", [
    ("resnet18", {"stem": (8, 64), "stage1": (8, 64), "stage2": (4, 128), "stage3": (2, 256),
                  "stage4": (1, 512)}),
    ("resnet20", {"stem": (32, 16), "stage1": (32, 16), "stage2": (16, 32), "stage3": (8, 64)}),
])
def test_intermediates(name, shapes):
  _, state = _forward(name, _variables(name), _input())
  sown = {k: v[0] for k, v in state["intermediates"].items()}
  assert set(sown) == {*shapes, "pre_logits"}
  for key, (s, c) in shapes.items():
    assert sown[key].shape == (2, s, s, c), key
  assert sown["pre_logits"].shape == (2, list(shapes.values())[-1][1])


def test_batch_stats_change_only_in_train_mode():
  variables = _variables("resnet20")
  _, eval_state = _forward("resnet20", variables, _input(), train=False)
  _, train_state = _forward("resnet20", variables, _input(), train=True)
  old, new = variables["batch_stats"], train_state["batch_stats"]
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, old, eval_state["batch_stats"])))
  assert not any(jax.tree.leaves(jax.tree.map(np.array_equal, old, new)))


def test_init_creates_every_parameter_and_zero_init_residual():
  variables = _real_init(registry.create("resnet20", zero_init_residual=True), _input(1, 1))
  assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, _variables("resnet20"))
  assert all(np.isfinite(v).all() for v in jax.tree.leaves(variables))
  params = variables["params"]
  for block in (f"layer{i}_{j}" for i in (1, 2, 3) for j in (0, 1, 2)):
    assert not np.any(params[block]["bn2"]["scale"]) and np.all(params[block]["bn1"]["scale"] == 1)
  block = resnet.Bottleneck(16, 2, zero_init_residual=True)
  params = _real_init(block, jnp.ones((1, 2, 2, 32)))["params"]
  assert not np.any(params["bn3"]["scale"]) and np.all(params["downsample_1"]["scale"] == 1)


def test_shortcut_a_is_subsample_and_zero_pad():
  x = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
  expected = np.zeros((2, 3, 3, 6), np.float32)
  for i in range(3):
    for j in range(3):
      expected[:, i, j, :3] = x[:, 2 * i, 2 * j]
  np.testing.assert_array_equal(resnet.shortcut_a(jnp.asarray(x), 6, 2), expected)
  np.testing.assert_array_equal(resnet.shortcut_a(jnp.asarray(x), 3, 1), x)


def test_block_with_shortcut_a_adds_the_padded_input():
  # With the residual branch zeroed (last BN scale 0, eval mode) a block is act(shortcut(x)).
  block = resnet.BasicBlock(32, 2, shortcut="A")
  x = jnp.abs(_input(7, channels=16))
  variables = _fake_variables(block, x)
  assert set(variables["params"]) == {"conv1", "bn1", "conv2", "bn2"}  # parameter-free shortcut
  variables["params"]["bn2"]["scale"] = np.zeros(32, np.float32)
  expected = np.zeros((2, 4, 4, 32), np.float32)
  expected[..., :16] = np.asarray(x)[:, ::2, ::2]
  np.testing.assert_allclose(block.apply(variables, x), expected, atol=1e-6)


def _randomise_batchnorm(torch, model):
  """Random stats and affine, so that all four BatchNorm tensors matter."""
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 1.5)
        m.weight.uniform_(0.5, 1.0)
        m.bias.uniform_(-0.1, 0.1)
  return model.eval()


def _torch_forward(torch, model, x):
  with torch.no_grad():
    return model(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())).numpy()


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_parity_with_torchvision(name):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  tv_model = getattr(torchvision.models, tv_resnet.TORCHVISION[name])(weights=None)
  expected = _torch_forward(torch, _randomise_batchnorm(torch, tv_model), _input())
  variables = tv_resnet.CONVERTERS[name](tv_model.state_dict())
  assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, _variables(name))
  logits, _ = _forward(name, variables, _input())
  assert np.max(np.abs(np.asarray(logits) - expected)) <= 1e-4


def test_original_bottleneck_matches_torchvision_with_the_stride_moved():
  # torchvision's Bottleneck with its stride moved from the 3×3 to the first 1×1 conv is v1.
  torch = pytest.importorskip("torch")
  tv_resnet_module = pytest.importorskip("torchvision.models.resnet")
  torch.manual_seed(0)
  downsample = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 1, stride=2, bias=False),
                                   torch.nn.BatchNorm2d(64))
  tv_block = tv_resnet_module.Bottleneck(32, 16, stride=2, downsample=downsample)
  tv_block.conv1.stride, tv_block.conv2.stride = (2, 2), (1, 1)
  x = _input(7, channels=32)  # odd size: where the stride sits changes which pixels are read
  expected = _torch_forward(torch, _randomise_batchnorm(torch, tv_block), x)
  variables = tv_resnet.convert(tv_block.state_dict())
  y = resnet.Bottleneck(16, 2, original=True).apply(variables, x)
  assert np.max(np.abs(np.asarray(y) - expected.transpose(0, 2, 3, 1))) <= 1e-4
  y15 = resnet.Bottleneck(16, 2).apply(variables, x)
  assert np.max(np.abs(np.asarray(y15) - expected.transpose(0, 2, 3, 1))) > 1e-3


@pytest.mark.parametrize("name", sorted(tv_resnet.WEIGHTS))
def test_weights_table_matches_torchvision(name):
  torchvision = pytest.importorskip("torchvision")
  enum = torchvision.models.get_model_weights(tv_resnet.TORCHVISION[name])
  assert tv_resnet.WEIGHTS[name][0].tag == enum.DEFAULT.name
  assert {w.tag for w in tv_resnet.WEIGHTS[name]} == {w.name for w in enum}
  for ours in tv_resnet.WEIGHTS[name]:
    theirs = enum[ours.tag]
    transform = theirs.transforms()
    assert theirs.url.endswith("/" + ours.file)
    assert ours.top1 == pytest.approx(theirs.meta["_metrics"]["ImageNet-1K"]["acc@1"])
    assert [ours.preprocessing.resize] == transform.resize_size
    assert [ours.preprocessing.crop] == transform.crop_size
    assert tuple(transform.mean) == ours.preprocessing.mean
    assert tuple(transform.std) == ours.preprocessing.std
    assert transform.interpolation.value == ours.preprocessing.interpolation
  assert tv_resnet.PREPROCESSING[name] == tv_resnet.WEIGHTS[name][0].preprocessing


# ---- stochastic depth (drop_path) ----

def test_drop_path_rates_fall_linearly_to_the_last_block():
  """Huang et al. 2016, Eq. 4: survival 1 − l/L · (1 − p_L), here p_L = 1 − 0.5."""
  rates = layers.drop_path_rates(0.5, 9)
  assert [1 - r for r in rates] == pytest.approx([1 - 0.5 * l / 9 for l in range(1, 10)])
  assert rates[-1] == 0.5 and rates[0] == pytest.approx(0.5 / 9)


@pytest.mark.parametrize("name, blocks", [("resnet20", 9), ("resnet18", 8)])
def test_each_block_gets_its_rate_and_the_count_is_unchanged(name, blocks):
  seen = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, layers.DropPath) and context.method_name == "__call__":
      seen.append((context.module.scope.path[-2], context.module.rate))
    return next_fun(*args, **kwargs)

  model = registry.create(name, drop_path=0.2)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(_key(), _input(1, batch=1), train=True))
  assert [r for _, r in seen] == pytest.approx([0.2 * l / blocks for l in range(1, blocks + 1)])
  assert seen[0][0] == "layer1_0" and len({b for b, _ in seen}) == blocks
  assert _count(model) == COUNTS[name]


def test_drop_path_is_the_identity_at_eval_and_random_in_training():
  small = dict(depths=(1, 1, 1), widths=(4, 8, 8))  # a small CIFAR ResNet: a quick compile
  x = _input(8, batch=8)
  plain = resnet.CifarResNet(**small)
  dropped = resnet.CifarResNet(**small, drop_path=0.5)
  variables = _fake_variables(plain, x)
  evaluate = jax.jit(lambda v: (dropped.apply(v, x), plain.apply(v, x)))
  np.testing.assert_array_equal(*evaluate.lower(variables).compile(FAST_COMPILE)(variables))

  def train(seed):
    run = lambda m: m.apply(variables, x, train=True, mutable=["batch_stats"],
                            rngs={"dropout": jax.random.key(seed)})[0]
    return run(dropped), run(plain)

  train = jax.jit(train).lower(np.int32(0)).compile(FAST_COMPILE)
  (a, plain_a), (b, _), (again, _) = train(np.int32(0)), train(np.int32(1)), train(np.int32(0))
  assert not np.allclose(a, plain_a) and not np.allclose(a, b)
  np.testing.assert_array_equal(a, again)  # a function of the key


def test_drop_path_masks_whole_examples_and_scales_the_kept():
  y = jnp.ones((4000, 3, 3, 2))
  out = np.asarray(layers.DropPath(0.25).apply({}, y, True, rngs={"dropout": _key()}))
  per_example = out.reshape(len(out), -1)
  assert set(np.unique(per_example)) <= {0.0, np.float32(1 / 0.75)}
  assert (per_example == per_example[:, :1]).all()  # one draw per example
  assert abs((per_example[:, 0] == 0).mean() - 0.25) < 0.03  # 3σ ≈ 0.02 over 4,000 examples
  np.testing.assert_array_equal(layers.DropPath(0.25).apply({}, y, False), y)


def test_drop_path_needs_residual_blocks():
  with pytest.raises(UserError, match="drop_path=0.1 needs residual blocks"):
    registry.create("resnet20", residual=False, drop_path=0.1).init(_key(), _input(1, batch=1))
