"""oneDNN's training-mode batch normalization (through the interceptor) computes what flax's
``nn.BatchNorm`` computes: outputs, running averages and gradients, on one device and on eight."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import NamedSharding, PartitionSpec as P

from cnnjax import cpu, parallel
from cnnjax.models import layers
from tests.cpu.test_pool import lowered


def _bn_loss(module, variables, x, g):
  """A loss of the module's output (weighted by ``g``) and its updated running statistics."""
  y, updates = module.apply(variables, x, mutable=["batch_stats"])
  return jnp.sum(y * g), updates


def _bn_grads(module, variables, x, g):
  grad = jax.value_and_grad(lambda *a: _bn_loss(module, *a), argnums=(0, 1), has_aux=True)
  return jax.jit(grad)(variables, x, g)  # a new function each call: a new trace


def _inputs(shape):
  module = layers.batch_norm(True, None, "bn")
  x = 3 * jax.random.normal(jax.random.key(0), shape) + 1
  g = jax.random.normal(jax.random.key(1), shape)
  variables = module.init(jax.random.key(2), x)
  keys = iter(jax.random.split(jax.random.key(3), 4))
  variables = jax.tree.map(lambda a: a + 0.3 * jax.random.uniform(next(keys), a.shape), variables)
  return module, variables, x, g


@pytest.mark.parametrize("shape", [(4, 5, 7, 16), (1, 1, 1, 3), (2, 8, 8, 64), (3, 2, 2, 6)])
def test_batch_norm_equals_flax(shape):
  """The same variables, output, running statistics and gradients (input, scale, bias)."""
  module, variables, x, g = _inputs(shape)
  with cpu.lowering():
    assert jax.tree.map(jnp.shape, module.init(jax.random.key(2), x)) == jax.tree.map(
        jnp.shape, variables)
    assert "cnnjax_onednn_bn_fwd" in lowered(lambda v, x: _bn_loss(module, v, x, g), variables, x)
    assert "cnnjax_onednn_bn_bwd" in lowered(lambda v, x: jax.grad(
        lambda x: _bn_loss(module, v, x, g)[0])(x), variables, x)
    (loss, updates), grads = _bn_grads(module, variables, x, g)
  (want_loss, want_updates), want_grads = _bn_grads(module, variables, x, g)
  assert float(loss) == pytest.approx(float(want_loss), rel=1e-5, abs=1e-4)
  for a, b in zip(jax.tree.leaves((updates, grads)), jax.tree.leaves((want_updates, want_grads))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * (1 + float(jnp.max(jnp.abs(b)))))


def test_eval_mode_bfloat16_and_cross_device_batch_norm_stay_flax():
  module, variables, x, _ = _inputs((2, 4, 4, 8))
  cases = [(layers.batch_norm(False, None, "bn"), x),
           (layers.batch_norm(True, jnp.bfloat16, "bn"), x.astype(jnp.bfloat16)),
           (nn.BatchNorm(use_running_average=False, axis_name="batch"), x)]
  with cpu.lowering():
    for module, x in cases[:2]:
      fn = lambda v, x: module.apply(v, x, mutable=["batch_stats"])
      assert "cnnjax_onednn" not in lowered(fn, variables, x)
    module, x = cases[2]
    fn = jax.vmap(lambda v, x: module.apply(v, x, mutable=["batch_stats"]), (None, 0),
                  axis_name="batch")
    assert "cnnjax_onednn" not in lowered(fn, variables, x[None])


def test_batch_norm_on_eight_devices_uses_whole_batch_statistics():
  """With the batch sharded, each device's partial sums are psum'd (the oneDNN call would see
  only its rows): the 8-device result equals the 1-device one."""
  module, variables, x, g = _inputs((16, 6, 6, 16))
  grad = jax.value_and_grad(functools.partial(_bn_loss, module), argnums=(0, 1), has_aux=True)
  mesh = parallel.make_mesh()
  batch = NamedSharding(mesh, P(parallel.DATA_AXIS))
  with cpu.lowering():
    one = jax.jit(grad)(variables, x, g)
    sharded = jax.jit(grad, in_shardings=(parallel.replicated(mesh), batch, batch))
    hlo = sharded.lower(variables, x, g).compile().as_text()
    eight = sharded(variables, jax.device_put(x, batch), jax.device_put(g, batch))
  assert "cnnjax_onednn_bn" not in hlo and "f32[16,6,6,16]" not in hlo
  for a, b in zip(jax.tree.leaves(eight), jax.tree.leaves(one)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * (1 + float(jnp.max(jnp.abs(b)))))
