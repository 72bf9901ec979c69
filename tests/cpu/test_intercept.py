"""``cpu.lowering``: whole plain models give XLA's numbers through the backend, on one device and
on eight, with the same variables; ``import cnnjax.models`` touches none of it."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from cnnjax import cpu, parallel
from cnnjax.cpu import build
from cnnjax.models import registry
from tests.cpu.test_pool import lowered
from tests.models.common import FAST_COMPILE, noise_variables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


@pytest.mark.e2e
@pytest.mark.parametrize("name,size,channels,train", [
    ("lenet5", 28, 1, True), ("resnet20", 32, 3, True),
    ("googlenet", 32, 3, False)])  # GoogLeNet: no dropout (its draws change under float64)
@pytest.mark.jax_lines
def test_whole_model_gradients_equal_xla(name, size, channels, train):
  """Against XLA's float64 gradient without the backend: XLA's own float32 gradient on 2 threads
  is not a good reference (ResNet-20 at batch 4: 1.1% off, where 1 thread and oneDNN agree to
  3e-6)."""
  model, variables, x = _model_and_inputs(name, size, 2, channels)
  with cpu.lowering():
    ours = _grads(model, variables, x, jnp.float32, train)
  jax.config.update("jax_enable_x64", True)  # random draws change with it: drawn above
  try:
    xla = _grads(model, variables, x, jnp.float64, train)
  finally:
    jax.config.update("jax_enable_x64", False)
  assert float(ours[0]) == pytest.approx(float(xla[0]), rel=1e-5)
  for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(xla[1])):
    assert float(np.linalg.norm(a - b)) <= 1e-4 * float(np.linalg.norm(b)) + 1e-7


@pytest.mark.parametrize("name,kwargs,size,channels", [
    ("lenet5", {}, 28, 1), ("lenet5", {"original": True}, 28, 1), ("resnet20", {}, 32, 3)])
def test_the_variables_are_the_same_and_every_layer_is_lowered(name, kwargs, size, channels):
  model = registry.create(name, num_classes=10, **kwargs)
  x = jnp.zeros((2, size, size, channels))
  init = lambda: jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(1), x)
  plain = init()
  with cpu.lowering():
    assert init() == plain
    step = lambda v: jax.grad(_loss_fn(model, v, x, jnp.zeros(2, jnp.int32)))(v["params"])
    text = lowered(step, plain)
    cuda = lowered(step, plain, platform="cuda")
  assert "cnnjax_onednn_conv_bwd_weights" in text and "convolution" not in text
  assert ("cnnjax_onednn_bn_bwd" in text) == (name == "resnet20")
  assert "cnnjax_onednn" not in cuda and "convolution" in cuda
  plain_step = lambda v: jax.grad(_loss_fn(model, v, x, jnp.zeros(2, jnp.int32)))(v["params"])
  assert "cnnjax_onednn" not in lowered(plain_step, plain)  # outside (a new trace): plain


@pytest.mark.jax_lines
@pytest.mark.e2e
def test_eight_devices_equal_one_and_keep_the_batch_sharded():
  assert jax.device_count() == 8  # tests/conftest.py
  model = registry.create("resnet20", num_classes=10)
  x = jax.random.normal(jax.random.key(0), (16, 32, 32, 3))
  labels = jnp.arange(16) % 10
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(1), x[:1])

  def grads(x, labels):
    return jax.value_and_grad(_loss_fn(model, variables, x, labels))(variables["params"])

  mesh = parallel.make_mesh()
  batch = NamedSharding(mesh, P(parallel.DATA_AXIS))
  with cpu.lowering():
    one = jax.jit(grads)(x, labels)
    sharded = jax.jit(grads, in_shardings=(batch, batch),
                      out_shardings=parallel.replicated(mesh))
    hlo = sharded.lower(x, labels).compile().as_text()
    eight = sharded(jax.device_put(x, batch), jax.device_put(labels, batch))
  # every device convolves its own 2 rows; nothing gathers the batch
  assert "cnnjax_onednn_conv_fwd" in hlo and "f32[2,32,32,16]" in hlo
  assert "f32[16,32,32,16]" not in hlo
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


def test_importing_the_models_builds_writes_and_prints_nothing(tmp_path):
  cache = tmp_path / "kernels"
  cache.mkdir()
  done = _python("import cnnjax.models", {build.CACHE_ENV: str(cache)})
  assert done.returncode == 0 and (done.stdout, done.stderr) == ("", ""), done.stderr
  assert not list(cache.iterdir())


_CONV = """
import jax, jax.numpy as jnp, json
from cnnjax import cpu
from cnnjax.models import registry
model = registry.create("lenet5", num_classes=10)
x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
v = model.init(jax.random.key(1), x)
with cpu.lowering():
  text = jax.jit(model.apply).lower(v, x).as_text()
  y, vjp = jax.vjp(lambda v: model.apply(v, x), v)
print(json.dumps({"onednn": "cnnjax_onednn" in text,
                  "out": [a.tolist() for a in jax.tree.leaves((y, *vjp(y)))]}))
"""


@pytest.mark.e2e
def test_without_a_compiler_one_notice_line_and_the_same_numbers(tmp_path):
  ours = _python(_CONV, {build.CACHE_ENV: str(tmp_path / "a")})
  broken = _python(_CONV, {build.CACHE_ENV: str(tmp_path / "b"), "CXX": "no-such-compiler"})
  off = _python(_CONV, {build.CACHE_ENV: str(tmp_path / "c"), build.SWITCH_ENV: "0"})
  assert not any(r.returncode for r in (ours, broken, off)), ours.stderr + broken.stderr
  notices = [l for l in broken.stderr.splitlines() if l.startswith("cnnjax:")]
  assert len(notices) == 1 and "no-such-compiler" in notices[0], broken.stderr
  assert not off.stderr.strip()
  a, b, c = (json.loads(r.stdout) for r in (ours, broken, off))
  assert (a["onednn"], b["onednn"], c["onednn"]) == (True, False, False)
  for u, v, w in zip(a["out"], b["out"], c["out"]):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(v, w)
  assert not list((tmp_path / "b").glob("*.so")) and not (tmp_path / "c").exists()


_CACHED_STEP = """
import jax, jax.numpy as jnp, optax
jax.config.update("jax_compilation_cache_dir", {cache!r})
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
hits = []
jax.monitoring.register_event_listener(
    lambda e, **kw: hits.append(e) if e == "/jax/compilation_cache/cache_hits" else None)
from cnnjax import cpu
from cnnjax.models import registry
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
with cpu.lowering():
  assert "cnnjax_onednn" in step.lower(params, opt).as_text()
  hits.clear()  # count only the train step's
  for _ in range(3):
    params, opt, value = step(params, opt)
print(len(hits), float(value))
"""


@pytest.mark.jax_lines
@pytest.mark.e2e
def test_a_cached_train_step_loads_and_runs_in_a_fresh_process(tmp_path):
  code = _CACHED_STEP.format(cache=str(tmp_path / "jax"))
  env = {build.CACHE_ENV: str(tmp_path / "kernels")}
  first = _python(code, env)
  second = _python(code, env)
  assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
  (hits_1, loss_1), (hits_2, loss_2) = (r.stdout.split() for r in (first, second))
  assert int(hits_1) == 0 and int(hits_2) >= 1
  assert float(loss_1) == float(loss_2)
