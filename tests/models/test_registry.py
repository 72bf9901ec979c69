"""Every registered model: exact parameter counts, and a real init, forward and backward."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import models
from cnnjax.errors import UserError
from tests.models.common import FAST_COMPILE

# The table (torchvision's counts where it has the model), num_classes = the default.
PARAMS = {
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "zfnet": 62_357_608,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    "googlenet": 6_624_904,
    "inception_v3": 27_161_264,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962,
}
OPTION_PARAMS = [
    ("lenet5", dict(original=True), 60_000),
    ("alexnet", dict(original=True), 60_965_224),
    ("resnet50", dict(original=True), 25_557_032),
    # The ablations' options (experiments/ablations.py).
    ("lenet5", dict(dropout=0.5), 61_706),
    ("lenet5", dict(batch_norm=True), 62_158),
    ("resnet20", dict(residual=False), 269_722),
    ("resnet56", dict(residual=False), 853_018),
    ("resnet20", dict(residual=False, shortcut="B"), 269_722),
    ("vgg16", dict(head="gap"), 15_227_688),
    ("vgg11_bn", dict(head="gap", num_classes=10), 9_231_114),
]



def count(name, size=None, **options):
  spec = models.get_spec(name)
  model = models.create(name, **options)
  size = size or spec.input_size
  x = jnp.zeros((1, size, size, spec.channels))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))


def test_the_table_covers_the_registry():
  assert sorted(PARAMS) == sorted(models.names())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_exact_parameter_count(name):
  assert count(name) == PARAMS[name]


@pytest.mark.parametrize("name,options,expected", OPTION_PARAMS)
def test_exact_parameter_count_of_paper_forms(name, options, expected):
  assert count(name, **options) == expected


def _run(model, variables, x, labels):
  """Train-mode gradients and new BatchNorm statistics, and eval-mode logits, in one compile."""
  def loss(params, batch_stats):
    logits, new = model.apply({"params": params, **batch_stats}, x, train=True,
                              rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"])
    onehot = jax.nn.one_hot(labels, logits.shape[-1])
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * onehot, -1)), (logits, new)

  def step(variables):
    params = variables["params"]
    stats = {k: v for k, v in variables.items() if k == "batch_stats"}
    grads, (train_logits, new) = jax.grad(loss, has_aux=True)(params, stats)
    eval_logits = model.apply(variables, x, train=False)
    return grads, train_logits, eval_logits, new

  return jax.jit(step).lower(variables).compile(FAST_COMPILE)(variables)


# JAX's CPU random number generation makes a real init of the 60M+ parameter models (their
# 4096-wide dense layers) take 20 s or more each on 2 cores; those get their variables from an
# abstract init filled with noise, and one of them (alexnet) is initialised for real below.
REAL_INIT_LIMIT = 30_000_000


def _noise_like(tree):
  """Small noise everywhere, but BatchNorm variances positive (rsqrt of a negative one is NaN,
  which max pooling propagates, as PyTorch's does)."""
  rng = np.random.default_rng(0)

  def fill(path, s):
    if path[-1].key == "var":
      return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
    return jnp.asarray(rng.normal(0, 0.02, s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(fill, tree)


def _init(model, x, real: bool):
  init = lambda k: model.init(k, x[:1], train=False)
  if not real:
    return _noise_like(jax.eval_shape(init, jax.random.key(0)))
  return jax.jit(init).lower(jax.random.key(0)).compile(FAST_COMPILE)(jax.random.key(0))


# The architectures whose experiment file has a smoke variant train for real through launch.py
# (tests/experiments/test_experiment_files.py: a falling loss, which needs finite gradients and
# moving statistics); here only the code paths no smoke variant runs are compiled for real: VGG
# without BatchNorm and ResNet's bottleneck blocks. The rest, and the deeper variants of the same
# blocks, are traced abstractly (init, train-mode forward and backward, eval-mode forward: shapes
# and dtypes, no compile): compiling each costs 10-90 s on 2 CPU cores.
REAL_RUN = ("vgg11", "resnet50")


def _small_input(spec):
  """A small valid input: the minimum size, but ≥ 32 so BatchNorm sees more than 2 values."""
  size = spec.min_input_size if spec.min_input_size >= 28 else 32
  return jnp.asarray(np.random.default_rng(0).normal(size=(2, size, size, spec.channels)),
                     jnp.float32)


@pytest.mark.e2e
@pytest.mark.parametrize("name", REAL_RUN)
def test_init_forward_backward_for_real(name):
  spec = models.get_spec(name)
  model = models.create(name)
  x = _small_input(spec)
  variables = _init(model, x, real=PARAMS[name] < REAL_INIT_LIMIT)
  grads, train_logits, eval_logits, new = _run(model, variables, x, jnp.array([1, 2]))
  for logits in (train_logits, eval_logits):
    assert logits.shape == (2, spec.num_classes) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
  if "batch_stats" in variables:  # train mode moves the statistics; eval mode reads them only
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"],
                         new["batch_stats"])
    assert any(jax.tree.leaves(moved))
  else:
    assert not new


@pytest.mark.parametrize("name", [n for n in models.names() if n not in REAL_RUN])
def test_init_forward_backward_traced(name):
  spec = models.get_spec(name)
  model = models.create(name)
  x = _small_input(spec)

  def everything(key):
    variables = model.init(key, x[:1], train=False)
    def loss(params):
      logits, new = model.apply({**variables, "params": params}, x, train=True,
                                rngs={"dropout": key}, mutable=["batch_stats"])
      return jnp.sum(logits), new
    grads, new = jax.grad(loss, has_aux=True)(variables["params"])
    return variables, grads, new, model.apply(variables, x, train=False)

  variables, grads, new, eval_logits = jax.eval_shape(everything, jax.random.key(0))
  assert eval_logits.shape == (2, spec.num_classes) and eval_logits.dtype == jnp.float32
  assert jax.tree.structure(grads) == jax.tree.structure(variables["params"])
  assert all(g.shape == p.shape and g.dtype == jnp.float32 for g, p in
             zip(jax.tree.leaves(grads), jax.tree.leaves(variables["params"])))
  assert jax.tree.structure(new.get("batch_stats", {})) == jax.tree.structure(
      variables.get("batch_stats", {}))


@pytest.mark.e2e
def test_a_large_model_initialises_for_real():
  model = models.create("alexnet", num_classes=10)
  x = jnp.zeros((1, 63, 63, 3))
  variables = _init(model, x, real=True)
  kernel = np.asarray(variables["params"]["fc6"]["kernel"])
  assert kernel.shape == (9216, 4096) and np.isfinite(kernel).all() and kernel.std() > 0


def test_unknown_model_and_option_are_one_clear_line():
  with pytest.raises(UserError, match=r"unknown model 'resnet51'. Did you mean .*'resnet50'"):
    models.create("resnet51")
  with pytest.raises(UserError, match=r"model 'vgg16' takes no option 'shortcut'. Valid options:"):
    models.create("vgg16", shortcut="B")
  with pytest.raises(UserError, match=r"unknown dtype 'float8'"):
    models.create("lenet5", dtype="float8")


def test_options_set_to_none_keep_the_defaults():
  assert models.create("lenet5", activation=None, pool=None).activation == "relu"


@pytest.mark.e2e
def test_the_ablation_options_train_and_evaluate():
  """LeNet-5's BatchNorm moves its statistics in train mode, dropout is off in eval mode, and a
  plain CIFAR net (no shortcuts) differs from the residual one with the same weights."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 28, 28, 1)), jnp.float32)
  model = models.create("lenet5", batch_norm=True, dropout=0.5)
  variables = model.init(jax.random.key(0), x, train=False)
  apply = lambda key: model.apply(variables, x, train=True, rngs={"dropout": key},
                                  mutable=["batch_stats"])
  (a, new), (b, _) = apply(jax.random.key(1)), apply(jax.random.key(2))
  assert not np.allclose(a, b)  # dropout is on in train mode
  assert not np.allclose(new["batch_stats"]["bn1"]["mean"], 0)
  assert np.allclose(model.apply(variables, x), model.apply(variables, x))
  x32 = jnp.ones((1, 32, 32, 3))
  plain, residual = models.create("resnet20", residual=False), models.create("resnet20")
  variables = jax.jit(residual.init)(jax.random.key(0), x32)  # whole programs: op by op is slower
  assert not np.allclose(jax.jit(plain.apply)(variables, x32),
                         jax.jit(residual.apply)(variables, x32))
