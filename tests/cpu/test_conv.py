"""oneDNN's convolutions and batch normalization (through XLA's FFI) compute what
``lax.conv_general_dilated`` and flax's ``BatchNorm`` compute.

requirements.txt installs the oneDNN packages, so a missing extension is a failure here, not a
skip: these tests would otherwise pass while testing nothing.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from cnnjax import parallel
from cnnjax.models import kernels, layers, registry
from cnnjax.models.onednn import build
from tests.models.common import FAST_COMPILE, noise_variables
from tests.models.test_kernels import _lowered

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_extension_is_built_and_is_the_default():
  assert build.load() is not None, "the oneDNN extension did not build (see the notice above)"
  assert kernels.mode() == "onednn"


# (x shape NHWC, kernel HWIO, strides, padding, groups, kernel dilation)
GRID = [
    ((2, 9, 9, 3), (3, 3, 3, 8), (1, 1), ((1, 1), (1, 1)), 1, (1, 1)),
    ((1, 28, 28, 1), (5, 5, 1, 6), (1, 1), ((2, 2), (2, 2)), 1, (1, 1)),   # LeNet conv1, batch 1
    ((2, 13, 11, 16), (3, 3, 16, 16), (2, 2), ((0, 1), (1, 0)), 1, (1, 1)),  # asymmetric, odd
    ((2, 8, 8, 64), (1, 1, 64, 16), (2, 2), "VALID", 1, (1, 1)),             # ResNet projection
    ((2, 17, 17, 3), (7, 7, 3, 16), (2, 2), ((3, 3), (3, 3)), 1, (1, 1)),    # ResNet stem
    ((1, 35, 35, 3), (11, 11, 3, 8), (4, 4), ((2, 1), (2, 1)), 1, (1, 1)),   # AlexNet conv1
    ((2, 9, 9, 16), (5, 5, 8, 12), (1, 1), ((2, 2), (2, 2)), 2, (1, 1)),     # AlexNet groups
    ((2, 7, 7, 64), (3, 3, 64, 64), (1, 1), "SAME", 1, (1, 1)),
    ((2, 15, 15, 16), (3, 3, 16, 16), (1, 1), ((2, 2), (2, 2)), 1, (2, 2)),  # kernel dilation
    ((3, 2, 2, 32), (3, 3, 32, 16), (1, 1), ((1, 1), (1, 1)), 1, (1, 1)),   # ResNet-18's 2×2
    ((3, 1, 1, 32), (3, 3, 32, 16), (1, 1), ((1, 1), (1, 1)), 1, (1, 1)),   # its 1×1: one tap
    ((2, 2, 2, 16), (3, 3, 16, 32), (2, 2), ((1, 1), (1, 1)), 1, (1, 1)),   # 2×2 → 1×1: 2×2 taps
    ((2, 3, 5, 8), (5, 5, 8, 8), (1, 2), ((4, 0), (1, 3)), 1, (1, 1)),      # rows, columns cut
    ((2, 10, 10, 3), (5, 5, 3, 4), (4, 4), "VALID", 1, (1, 1)),
]


def _reference(x, w, strides, padding, groups, dilation):
  return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                  dimension_numbers=kernels.NHWC, feature_group_count=groups)


def _value_and_grads(conv, x, w, g):
  y, vjp = jax.vjp(conv, x, w)
  return (y, *vjp(g))


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,groups,dilation", GRID)
def test_value_and_gradients_match_xla(x_shape, w_shape, strides, padding, groups, dilation):
  x = jax.random.normal(jax.random.key(0), x_shape)
  w = jax.random.normal(jax.random.key(1), w_shape)
  ref = functools.partial(_reference, strides=strides, padding=padding, groups=groups,
                          dilation=dilation)
  ours = functools.partial(kernels.conv_general_dilated, window_strides=strides, padding=padding,
                           rhs_dilation=dilation, dimension_numbers=kernels.NHWC,
                           feature_group_count=groups)
  g = jax.random.normal(jax.random.key(2), jax.eval_shape(ref, x, w).shape)
  lowered = _lowered(ours, x, w)
  assert "cnnjax_onednn_conv_fwd" in lowered
  if x_shape[1:3] == (1, 1):  # only the centre tap reads the input: a 1×1 convolution
    assert f"tensor<1x1x{w_shape[2]}x{w_shape[3]}xf32>" in lowered
  got = jax.jit(_value_and_grads, static_argnums=0)(ours, x, w, g)
  want = jax.jit(_value_and_grads, static_argnums=0)(ref, x, w, g)
  for name, a, b in zip(("value", "input grad", "kernel grad"), got, want):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))),
                               err_msg=name)


def test_bfloat16_matches_float32_where_the_cpu_has_it():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16), jnp.bfloat16)
  w = jax.random.normal(jax.random.key(1), (3, 3, 16, 16), jnp.bfloat16)
  conv = functools.partial(kernels.conv_general_dilated, window_strides=(1, 1),
                           padding=((1, 1), (1, 1)), dimension_numbers=kernels.NHWC)
  assert ("cnnjax_onednn" in _lowered(conv, x, w)) == build.supports_bf16()
  got = jax.jit(conv)(x, w).astype(jnp.float32)
  want = _reference(x.astype(jnp.float32), w.astype(jnp.float32), (1, 1), ((1, 1), (1, 1)), 1,
                    (1, 1))
  assert float(jnp.linalg.norm(got - want)) <= 1e-2 * float(jnp.linalg.norm(want))


def _loss_fn(model, variables, x, labels, train=True):
  def loss(params):
    logits, _ = model.apply({**variables, "params": params}, x, train=train,
                            rngs={"dropout": jax.random.key(2)},
                            mutable=["batch_stats", "intermediates"])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  return loss


def _model_and_inputs(name, size, batch, channels):
  model = registry.create(name, num_classes=10)
  x = jax.random.normal(jax.random.key(0), (batch, size, size, channels))
  return model, jax.device_get(noise_variables(model, x[:1])), np.asarray(x)


def _grads(model, variables, x, dtype, train):
  variables, x = jax.tree.map(lambda a: jnp.asarray(a, dtype), (variables, x))
  loss = _loss_fn(model, variables, x, jnp.arange(len(x)) % 10, train)
  step = jax.jit(jax.value_and_grad(loss)).lower(variables["params"]).compile(FAST_COMPILE)
  return jax.device_get(step(variables["params"]))


@pytest.mark.parametrize("name,size,channels,train", [
    ("lenet5", 28, 1, True), ("resnet20", 32, 3, True),
    ("googlenet", 32, 3, False)])  # GoogLeNet: no dropout (its draws change under float64)
def test_whole_model_gradients_equal_xla(name, size, channels, train):
  """Against XLA's float64 gradient: XLA's own float32 gradient on 2 threads is not a good
  reference (ResNet-20 at batch 4: 1.1% off, where 1 thread and oneDNN agree to 3e-6)."""
  model, variables, x = _model_and_inputs(name, size, 2, channels)
  ours = _grads(model, variables, x, jnp.float32, train)
  jax.config.update("jax_enable_x64", True)  # random draws change with it: drawn above
  try:
    with mock.patch.dict(os.environ, {kernels.ENV: "xla"}):
      xla = _grads(model, variables, x, jnp.float64, train)
  finally:
    jax.config.update("jax_enable_x64", False)
  assert float(ours[0]) == pytest.approx(float(xla[0]), rel=1e-5)
  for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(xla[1])):
    assert float(np.linalg.norm(a - b)) <= 1e-4 * float(np.linalg.norm(b)) + 1e-7


def test_a_cuda_lowering_of_a_train_step_has_no_ffi_target():
  model = registry.create("resnet20", num_classes=10)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(1), x)
  step = lambda v: jax.grad(_loss_fn(model, v, x, jnp.zeros(2, jnp.int32)))(v["params"])
  cpu = _lowered(step, variables)
  assert "cnnjax_onednn_conv_bwd_weights" in cpu and "cnnjax_onednn_bn_bwd" in cpu
  cuda = _lowered(step, variables, platform="cuda")
  assert "cnnjax_onednn" not in cuda and "convolution" in cuda


def test_eight_devices_equal_one_and_keep_the_batch_sharded():
  assert jax.device_count() == 8  # tests/conftest.py
  model = registry.create("resnet20", num_classes=10)
  x = jax.random.normal(jax.random.key(0), (16, 32, 32, 3))
  labels = jnp.arange(16) % 10
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(1), x[:1])

  def grads(x, labels):
    return jax.value_and_grad(_loss_fn(model, variables, x, labels))(variables["params"])

  one = jax.jit(grads)(x, labels)
  mesh = parallel.make_mesh()
  batch = NamedSharding(mesh, P(parallel.DATA_AXIS))
  sharded = jax.jit(grads, in_shardings=(batch, batch), out_shardings=parallel.replicated(mesh))
  hlo = sharded.lower(x, labels).compile().as_text()
  # every device convolves its own 2 rows; nothing gathers the batch
  assert "cnnjax_onednn_conv_fwd" in hlo and "f32[2,32,32,16]" in hlo
  assert "f32[16,32,32,16]" not in hlo
  eight = sharded(jax.device_put(x, batch), jax.device_put(labels, batch))
  # BatchNorm runs as oneDNN's primitive on one device and as psum'd JAX sums on eight: their
  # float32 rounding differs (the stem's BN gradient: 1.6e-3 and 9e-7 from float64, where XLA's
  # own float32 ResNet-20 gradient is 1.1% off, see above). Statistics over each device's 2 rows
  # instead of the batch would be off by far more.
  assert float(eight[0]) == pytest.approx(float(one[0]), rel=1e-5)
  for a, b in zip(jax.tree.leaves(eight[1]), jax.tree.leaves(one[1])):
    assert float(jnp.linalg.norm(a - b)) <= 5e-3 * float(jnp.linalg.norm(b)) + 1e-7


def _python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": ROOT, "XLA_FLAGS": "", **env}
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout, check=False)


_CONV = """
import jax, jax.numpy as jnp, json, functools
from cnnjax.models import kernels
x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
w = jax.random.normal(jax.random.key(1), (3, 3, 3, 8))
conv = functools.partial(kernels.conv_general_dilated, window_strides=(2, 2),
                         padding=((1, 0), (0, 1)), dimension_numbers=kernels.NHWC)
y, vjp = jax.vjp(conv, x, w)
print(json.dumps({"mode": kernels.mode(), "out": [a.tolist() for a in (y, *vjp(y))]}))
"""


def test_without_a_compiler_one_notice_line_and_the_same_numbers(tmp_path):
  ours = _python(_CONV, {build.CACHE_ENV: str(tmp_path / "a")})
  broken = _python(_CONV, {build.CACHE_ENV: str(tmp_path / "b"), "CXX": "no-such-compiler"})
  assert ours.returncode == 0 and broken.returncode == 0, ours.stderr + broken.stderr
  notices = [l for l in broken.stderr.splitlines() if l.startswith("cnnjax:")]
  assert len(notices) == 1 and "no-such-compiler" in notices[0], broken.stderr
  a, b = json.loads(ours.stdout), json.loads(broken.stdout)
  assert (a["mode"], b["mode"]) == ("onednn", "taps")
  for u, v in zip(a["out"], b["out"]):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
  assert not list((tmp_path / "b").glob("*.so"))


_CACHED_STEP = """
import jax, jax.numpy as jnp, optax
jax.config.update("jax_compilation_cache_dir", {cache!r})
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
hits = []
jax.monitoring.register_event_listener(
    lambda e, **kw: hits.append(e) if e == "/jax/compilation_cache/cache_hits" else None)
from cnnjax.models import kernels, registry
model = registry.create("lenet5", num_classes=10)
x = jax.random.normal(jax.random.key(0), (8, 28, 28, 1))
variables = model.init(jax.random.key(1), x[:1])
tx = optax.sgd(0.1)
@jax.jit
def step(params, opt):
  loss = lambda p: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      model.apply({{**variables, "params": p}}, x), jnp.arange(8) % 10))
  value, g = jax.value_and_grad(loss)(params)
  updates, opt = tx.update(g, opt)
  return optax.apply_updates(params, updates), opt, value
params, opt = variables["params"], tx.init(variables["params"])
assert "cnnjax_onednn" in step.lower(params, opt).as_text()
hits.clear()  # count only the train step's
for _ in range(3):
  params, opt, value = step(params, opt)
print(len(hits), float(value))
"""


def test_a_cached_train_step_loads_and_runs_in_a_fresh_process(tmp_path):
  code = _CACHED_STEP.format(cache=str(tmp_path / "jax"))
  env = {build.CACHE_ENV: str(tmp_path / "kernels")}
  first = _python(code, env)
  second = _python(code, env)
  assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
  (hits_1, loss_1), (hits_2, loss_2) = (r.stdout.split() for r in (first, second))
  assert int(hits_1) == 0 and int(hits_2) >= 1
  assert float(loss_1) == float(loss_2)


# ---- batch normalization -----------------------------------------------------------------

def _bn_loss(module, variables, x, g, relu=False):
  """A loss of the module's output (weighted by ``g``) and its updated running statistics."""
  if isinstance(module, layers.BatchNorm):
    y, updates = module.apply(variables, x, relu, mutable=["batch_stats"])
  else:  # flax's, with the ReLU after it
    y, updates = module.apply(variables, x, mutable=["batch_stats"])
    y = nn.relu(y) if relu else y
  return jnp.sum(y * g), updates


def _bn_grads(module, variables, x, g, relu=False):
  grad = jax.value_and_grad(_bn_loss, argnums=(1, 2), has_aux=True)
  return jax.jit(grad, static_argnums=(0, 4))(module, variables, x, g, relu)


@pytest.mark.parametrize("shape,relu", [((4, 5, 7, 16), False), ((1, 1, 1, 3), False),
                                        ((2, 8, 8, 64), True), ((3, 2, 2, 6), True)])
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_equals_flax(shape, relu, train):
  """``layers.BatchNorm`` (oneDNN's primitive in training mode, the ReLU fused into it) against
  ``flax.linen.BatchNorm`` (then ``nn.relu``): the same variables, output, running statistics
  and gradients (input, scale, bias)."""
  ours = layers.BatchNorm(use_running_average=not train)
  flax_bn = nn.BatchNorm(use_running_average=not train, momentum=layers.BN_MOMENTUM,
                         epsilon=layers.BN_EPS)
  x = 3 * jax.random.normal(jax.random.key(0), shape) + 1
  g = jax.random.normal(jax.random.key(1), shape)
  variables = ours.init(jax.random.key(2), x)
  assert (jax.tree.map(jnp.shape, variables)
          == jax.tree.map(jnp.shape, flax_bn.init(jax.random.key(2), x)))
  keys = iter(jax.random.split(jax.random.key(3), 4))
  variables = jax.tree.map(lambda a: a + 0.3 * jax.random.uniform(next(keys), a.shape), variables)
  if train:
    lowered = _lowered(lambda v, x: ours.apply(v, x, relu, mutable=["batch_stats"]), variables, x)
    assert "cnnjax_onednn_bn_fwd" in lowered
    assert "cnnjax_onednn_bn_bwd" in _lowered(lambda v, x: jax.grad(
        lambda x: _bn_loss(ours, v, x, g, relu)[0])(x), variables, x)
  (loss, updates), grads = _bn_grads(ours, variables, x, g, relu)
  (want_loss, want_updates), want_grads = _bn_grads(flax_bn, variables, x, g, relu)
  assert float(loss) == pytest.approx(float(want_loss), rel=1e-5, abs=1e-4)
  for a, b in zip(jax.tree.leaves((updates, grads)), jax.tree.leaves((want_updates, want_grads))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * (1 + float(jnp.max(jnp.abs(b)))))


def test_batch_norm_on_eight_devices_uses_whole_batch_statistics():
  """With the batch sharded, each device's partial sums are psum'd (the oneDNN call would see
  only its rows): the 8-device result equals the 1-device one."""
  module = layers.BatchNorm(use_running_average=False)
  x = 3 * jax.random.normal(jax.random.key(0), (16, 6, 6, 16)) + 1
  g = jax.random.normal(jax.random.key(1), x.shape)
  variables = module.init(jax.random.key(2), x)
  grad = jax.value_and_grad(functools.partial(_bn_loss, module), argnums=(0, 1), has_aux=True)
  one = jax.jit(grad)(variables, x, g)
  mesh = parallel.make_mesh()
  batch = NamedSharding(mesh, P(parallel.DATA_AXIS))
  sharded = jax.jit(grad, in_shardings=(parallel.replicated(mesh), batch, batch))
  hlo = sharded.lower(variables, x, g).compile().as_text()
  assert "cnnjax_onednn_bn" not in hlo and "f32[16,6,6,16]" not in hlo
  eight = sharded(variables, jax.device_put(x, batch), jax.device_put(g, batch))
  for a, b in zip(jax.tree.leaves(eight), jax.tree.leaves(one)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * (1 + float(jnp.max(jnp.abs(b)))))
