"""VGG (cnnjax/models/vgg.py) and its torchvision converter (cnnjax/transfer/tv_vgg.py).

Every VGG carries a 25088×4096 fc6, so JAX's random init costs tens of seconds on a shared CPU:
forward tests run on numpy-filled variables whose tree comes from ``jax.eval_shape(model.init)``.
Real-valued forwards and torchvision parity run for configuration A (vgg11, vgg11_bn); B, D and E
differ only in the depth table, so they are checked by shape (forward traced with
``jax.eval_shape``, converter mapping checked on a torchvision model built on the meta device).
bfloat16 is traced here; it runs for real in test_alexnet.py (eager bfloat16 on CPU is slow).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.models import registry
from cnnjax.models.vgg import DEPTHS
from tests.models.common import abstract_variables, numpy_input

COUNTS = {
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}
SOWN = {"stem", "stage1", "stage2", "stage3", "stage4", "stage5", "pre_logits"}


@functools.lru_cache(maxsize=1)
def _variables(name):
  """Cheap He-uniform-like numpy variables for ``name``, in the tree ``model.init`` creates.

  Each leaf repeats one block of uniform noise (``np.resize``): random enough for a forward
  pass, and far cheaper than drawing 133M numbers.
  """
  noise = np.random.default_rng(0).random(1_000_003, np.float32) * 2 - 1  # U(-1, 1)

  def fill(path, leaf):
    u = np.resize(noise, leaf.shape)
    kind = path[-1].key
    if kind == "kernel":
      u *= np.sqrt(6.0 / np.prod(leaf.shape[:-1]))
    elif kind in ("scale", "var"):
      u = u * 0.5 + 1
    else:
      u *= 0.1
    return jax.device_put(u)

  return jax.tree_util.tree_map_with_path(fill, abstract_variables(registry.create(name), 32))


@pytest.mark.parametrize("name", list(COUNTS))
def test_parameter_count(name):
  params = abstract_variables(registry.create(name), 224)["params"]
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == COUNTS[name]


def test_registered_with_depth_table():
  for name in COUNTS:
    spec = registry.get_spec(name)
    assert spec.fixed == dict(depths=DEPTHS[name.removesuffix("_bn")],
                              batch_norm=name.endswith("_bn"))
    assert spec.min_input_size == 32


@pytest.mark.parametrize("name", list(COUNTS))
def test_min_input_size_and_intermediates(name):
  model, size = registry.create(name), registry.get_spec(name).min_input_size
  variables = abstract_variables(model, size)
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  logits, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, mutable=["intermediates"]), variables, x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  assert set(state["intermediates"]) == SOWN
  with pytest.raises(Exception):
    abstract_variables(model, size - 1)


@pytest.mark.parametrize("opts", [
    {"activation": act} for act in ("relu", "leaky_relu", "elu", "gelu", "tanh")] + [
    {"pool": "avg"}, {"dropout": 0.2}, {"dtype": "bfloat16"}, {"negative_slope": 0.2}])
def test_every_option_builds_and_traces(opts):
  for name in ("vgg11", "vgg11_bn"):
    model = registry.create(name, **opts)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    out, _ = jax.eval_shape(lambda v, x: model.apply(
        v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"]),
        abstract_variables(model, 32), x)
    assert out.shape == (2, 1000) and out.dtype == jnp.float32


@pytest.mark.e2e
@pytest.mark.parametrize("name,opts", [
    ("vgg11", {}),
    ("vgg11_bn", {"activation": "leaky_relu", "pool": "avg", "negative_slope": 0.2}),
])
def test_forward_train_and_eval(name, opts):
  model, variables = registry.create(name, **opts), _variables(name)
  x = numpy_input(32)
  out = model.apply(variables, x, train=False)
  assert out.shape == (2, 1000) and out.dtype == jnp.float32 and np.isfinite(out).all()
  out, _ = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)},
                       mutable=["batch_stats"])
  assert out.shape == (2, 1000) and out.dtype == jnp.float32 and np.isfinite(out).all()


def test_batch_stats_change_only_in_train_mode():
  model, variables = registry.create("vgg11_bn"), _variables("vgg11_bn")
  x = numpy_input(32)
  out, state = model.apply(variables, x, train=False, mutable=["batch_stats"])
  assert out.shape == (2, 1000) and np.isfinite(out).all()
  same = jax.tree.map(np.array_equal, state["batch_stats"], variables["batch_stats"])
  assert all(jax.tree.leaves(same))
  _, state = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)},
                         mutable=["batch_stats"])
  same = jax.tree.map(np.array_equal, state["batch_stats"], variables["batch_stats"])
  assert not any(jax.tree.leaves(same))


# At 64×64 the adaptive pool sees 2×2 maps, so the fc6 row permutation is checked spatially.
@pytest.mark.e2e
@pytest.mark.parametrize("name,size", [("vgg11", 32), ("vgg11_bn", 64)])
def test_torchvision_parity(name, size):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  from cnnjax.transfer import tv_vgg

  torch.manual_seed(0)
  tv = getattr(torchvision.models, tv_vgg.TORCHVISION[name])(weights=None).eval()
  for m in tv.modules():  # random running stats, so that they matter
    if isinstance(m, torch.nn.BatchNorm2d):
      m.running_mean.uniform_(-0.5, 0.5)
      m.running_var.uniform_(0.5, 1.5)
  variables = tv_vgg.CONVERTERS[name](tv.state_dict())
  model = registry.create(name)
  expected = jax.tree.map(lambda s: s.shape, abstract_variables(model, size))
  assert jax.tree.map(np.shape, variables) == expected
  x = numpy_input(size)
  with torch.no_grad():
    want = tv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  got = np.asarray(model.apply(variables, x, train=False))
  assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("name", list(COUNTS))
def test_converter_maps_every_tensor(name):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  from cnnjax.transfer import tv_vgg

  with torch.device("meta"):  # shapes only, nothing allocated
    tv = getattr(torchvision.models, tv_vgg.TORCHVISION[name])(weights=None)
  names = tv_vgg._names(DEPTHS[name.removesuffix("_bn")], name.endswith("_bn"))
  ours = abstract_variables(registry.create(name), 224)
  layout = {4: (2, 3, 1, 0), 2: (1, 0), 1: (0,)}  # OIHW -> HWIO, (out, in) -> (in, out)
  modules = set()
  for key, tensor in tv.state_dict().items():
    module, _, kind = key.rpartition(".")
    modules.add(module)
    if kind == "num_batches_tracked":
      continue
    collection = "batch_stats" if kind.startswith("running_") else "params"
    leaf = ours[collection][names[module]]
    leaf = {"weight": leaf.get("kernel", leaf.get("scale")), "bias": leaf.get("bias"),
            "running_mean": leaf.get("mean"), "running_var": leaf.get("var")}[kind]
    assert leaf.shape == tuple(tensor.shape[i] for i in layout[tensor.ndim]), key
  assert modules == set(names)
