"""Inception v3: exact sizes, forward in both modes, options, aux head, torchvision parity."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.errors import UserError
from cnnjax.models import inception_v3, registry
from cnnjax.transfer import tv_inception_v3

FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _count(model, size=299):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))


def _variables(model, x):
  """Variables shaped by ``model.init`` (traced with ``eval_shape``), filled with scaled noise.

  Running ``init`` itself costs minutes of XLA compilation on 2 CPU cores (one truncated normal
  per parameter shape); these tests only need the tree it makes.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name in ("scale", "var"):
      return jnp.asarray(rng.uniform(0.5, 1.5, shape), jnp.float32)
    if name in ("bias", "mean"):
      return jnp.asarray(rng.normal(0.0, 0.1, shape), jnp.float32)
    return jnp.asarray(rng.normal(0.0, math.prod(shape[:-1]) ** -0.5, shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _apply(model, variables, x, train):
  """``model.apply`` in one XLA computation; optimisation level 0 halves the compile time."""
  def run(variables, x):
    return model.apply(variables, x, train=train, rngs={"dropout": jax.random.key(2)},
                       mutable=["batch_stats", "intermediates"])

  compiled = jax.jit(run).lower(variables, x).compile(FAST_COMPILE)
  return compiled(variables, x)


def _input(size, batch=2):
  return jax.random.normal(jax.random.key(1), (batch, size, size, 3))


@pytest.mark.parametrize("aux, count", [(True, 27_161_264), (False, 23_834_568)])
def test_param_count(aux, count):
  model = registry.create("inception_v3", aux_logits=aux)
  assert _count(model) == count
  assert _count(model, 75) == count  # the aux head makes its parameters at the minimum too


def test_forward_at_min_size():
  spec = registry.get_spec("inception_v3")
  model = registry.create("inception_v3")
  x = _input(spec.min_input_size)
  variables = _variables(model, x)
  for train in (False, True):
    logits, state = _apply(model, variables, x, train)
    assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    inter = state["intermediates"]
    expected = {"stem", "stage1", "stage2", "stage3", "pre_logits"}
    assert set(inter) == expected | ({"aux_logits"} if train else set())
    assert inter["stage1"][0].shape == (2, 7, 7, 288)
    assert inter["stage3"][0].shape == (2, 1, 1, 2048)
    # BatchNorm statistics move in train mode only.
    stats = state.get("batch_stats", variables["batch_stats"])
    moved = not np.allclose(stats["Conv2d_1a_3x3"]["bn"]["mean"],
                            variables["batch_stats"]["Conv2d_1a_3x3"]["bn"]["mean"])
    assert moved == train
  (aux,) = inter["aux_logits"]
  assert aux.shape == (2, 1000) and aux.dtype == jnp.float32 and np.isfinite(aux).all()


def test_too_small_raises():
  with pytest.raises(UserError, match="75"):
    _count(registry.create("inception_v3"), 74)


def test_options_build_and_run():
  # Combined, so that they cost one compilation; train mode runs every layer.
  model = registry.create("inception_v3", aux_logits=False, activation="leaky_relu",
                          negative_slope=0.1, pool="avg", dtype="bfloat16", dropout=0.2)
  x = _input(75)
  variables = _variables(model, x)
  assert "AuxLogits" not in variables["params"]
  logits, state = _apply(model, variables, x, True)
  assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
  assert "aux_logits" not in state["intermediates"]


# --- parity with torchvision ------------------------------------------------------------------

def _randomise_bn(torch, net, batch):
  """Random BN affine params, then running stats from one batch, perturbed: they matter, and
  the activations keep unit scale through the network."""
  bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for m in bns:
      m.weight.uniform_(0.5, 1.5)
      m.bias.normal_(0.0, 0.2)
      m.momentum = 1.0
    net.train()
    net(batch)
    for m in bns:
      m.momentum = 0.1
      m.running_mean.add_(0.1 * torch.randn_like(m.running_mean))
      m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25)).add_(0.01)
  net.eval()


def _shapes(tree):
  return jax.tree.map(lambda a: tuple(a.shape), tree)


@pytest.fixture(scope="module")
def torch_net():
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  # PyTorch's default init: torchvision's (std 0.1) makes logits of ~100, whose float32
  # rounding alone exceeds the 1e-4 tolerance.
  net = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=False,
                                        init_weights=False)
  aux, net.AuxLogits = net.AuxLogits, None  # its 5×5 conv needs Mixed_6e ≥ 17×17
  _randomise_bn(torch, net, torch.randn(4, 3, 107, 107))
  net.AuxLogits = aux
  _randomise_bn(torch, aux, torch.randn(4, 768, 17, 17))
  return torch, net


def test_parity_with_torchvision(torch_net):
  torch, net = torch_net
  size = 107  # Mixed_5 at 11×11, Mixed_6 at 5×5, Mixed_7 at 2×2
  x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
  with torch.no_grad():
    want = net(torch.from_numpy(x)).numpy()
  model = registry.create("inception_v3")
  variables = tv_inception_v3.CONVERTERS["inception_v3"](net.state_dict())
  xj = jnp.asarray(x.transpose(0, 2, 3, 1))
  assert _shapes(variables) == _shapes(_variables(model, xj))
  got, _ = _apply(model, variables, xj, False)
  assert np.abs(want).std() > 0.1
  assert np.max(np.abs(np.asarray(got) - want)) <= 1e-4

  plain = tv_inception_v3.inception_v3(net.state_dict(), aux_logits=False)
  no_aux = registry.create("inception_v3", aux_logits=False)
  assert _shapes(plain) == _shapes(_variables(no_aux, xj))


@pytest.mark.parametrize("size", [17, 20])  # inputs 299 and 347; 17×17 → 5×5 → 1×1
def test_aux_head_parity_with_torchvision(torch_net, size):
  torch, net = torch_net
  x = np.random.default_rng(1).standard_normal((2, 768, size, size)).astype(np.float32)
  with torch.no_grad():
    want = net.AuxLogits(torch.from_numpy(x)).numpy()
  variables = tv_inception_v3.inception_v3(net.AuxLogits.state_dict())  # keys without prefix
  head = inception_v3.InceptionAux(num_classes=1000)
  got = head.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  assert np.max(np.abs(np.asarray(got) - want)) <= 1e-4
