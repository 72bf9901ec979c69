"""Schedules and optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.errors import UserError
from cnnjax.train import optim


def test_warmup_then_cosine():
  s = optim.schedule("cosine", base_lr=1.0, total_steps=110, warmup_steps=10)
  assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
  assert float(s(10)) == pytest.approx(1.0)
  assert float(s(60)) == pytest.approx(0.5, abs=1e-6)
  assert float(s(110)) == pytest.approx(0.0, abs=1e-7)


def test_step_schedule_boundaries_count_from_the_start():
  s = optim.schedule("step", base_lr=1.0, total_steps=100, warmup_steps=5,
                     decay_steps=(30, 60), decay_factor=0.1)
  assert float(s(29)) == pytest.approx(1.0)
  assert float(s(31)) == pytest.approx(0.1)
  assert float(s(61)) == pytest.approx(0.01)


def test_constant():
  assert float(optim.schedule("constant", base_lr=0.3, total_steps=10)(7)) == pytest.approx(0.3)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_descends_a_quadratic(name):
  params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
  tx = optim.optimizer(name, 0.1, weight_decay=1e-4)
  state = tx.init(params)
  loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  start = loss(params)
  for _ in range(5):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  assert loss(params) < start


def test_weight_decay_skips_biases_by_default():
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
  zero = jax.tree.map(jnp.zeros_like, params)
  tx = optim.optimizer("sgd", 1.0, weight_decay=0.5)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.5)
  np.testing.assert_allclose(updates["bias"], 0.0)
  tx = optim.optimizer("sgd", 1.0, weight_decay=0.5, decay_all=True)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["bias"], -0.5)


def test_unknown_names():
  with pytest.raises(UserError, match="unknown optimizer 'adamx'.*'adam'"):
    optim.optimizer("adamx", 0.1)
  with pytest.raises(UserError, match="unknown schedule 'cosin'.*'cosine'"):
    optim.schedule("cosin", base_lr=1.0, total_steps=10)


def test_step_boundaries_inside_warmup_or_coinciding_still_decay():
  s = optim.schedule("step", base_lr=1.0, total_steps=100, warmup_steps=10,
                     decay_steps=(5, 40, 40), decay_factor=0.1)
  assert float(s(11)) == pytest.approx(0.1)  # the boundary at 5 applies when warm-up ends
  assert float(s(41)) == pytest.approx(0.001)  # two decays at step 40


def test_polynomial_schedule_after_warmup():
  """MLPerf's rule: end + (base − end)·(1 − t/T)² from the warm-up's end."""
  s = optim.schedule("polynomial", base_lr=2.0, total_steps=30, warmup_steps=10,
                     final_lr_fraction=0.05, power=2.0)
  assert float(s(5)) == pytest.approx(1.0)
  assert float(s(10)) == pytest.approx(2.0)
  assert float(s(20)) == pytest.approx(0.1 + 1.9 * 0.5**2)
  assert float(s(30)) == pytest.approx(0.1)


def _tree():
  return {"conv": {"kernel": jnp.arange(1.0, 7.0).reshape(3, 2), "bias": jnp.array([0.5, -1.0])},
          "bn": {"scale": jnp.array([2.0, 3.0])}}


def _run(tx, steps=3):
  params = _tree()
  state = tx.init(params)
  for i in range(steps):
    grads = jax.tree.map(lambda p: jnp.sin(p * (i + 1)), params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


def _assert_trees_equal(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)


def test_lars_is_optax_with_kernels_only_decay_and_trust_ratio():
  mask = {"conv": {"kernel": True, "bias": False}, "bn": {"scale": False}}
  ours = optim.optimizer("lars", 0.1, momentum=0.9, weight_decay=1e-2, eps=1e-8,
                         trust_coefficient=0.02)
  theirs = optax.lars(0.1, weight_decay=1e-2, weight_decay_mask=mask, trust_coefficient=0.02,
                      eps=1e-8, trust_ratio_mask=mask, momentum=0.9)
  _assert_trees_equal(_run(ours), _run(theirs))
  # decay_all decays everything, but the trust ratio still skips biases and norms
  ours = optim.optimizer("lars", 0.1, weight_decay=1e-2, decay_all=True)
  theirs = optax.lars(0.1, weight_decay=1e-2, weight_decay_mask=True, eps=1e-8,
                      trust_ratio_mask=mask, momentum=0.9)
  _assert_trees_equal(_run(ours), _run(theirs))


def test_lars_bias_takes_the_plain_rate():
  """A bias's first step is −lr·g (momentum starts at 0): no trust ratio, no decay."""
  params = _tree()
  tx = optim.optimizer("lars", 0.1, weight_decay=1e-2, trust_coefficient=0.02)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["bias"], [-0.1, -0.1], rtol=1e-6)
  w = params["conv"]["kernel"]
  g = 1.0 + 1e-2 * w
  ratio = 0.02 * jnp.linalg.norm(w) / (jnp.linalg.norm(g) + 1e-8)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.1 * ratio * g, rtol=1e-5)


def test_lamb_is_optax_with_kernels_only_decay():
  mask = {"conv": {"kernel": True, "bias": False}, "bn": {"scale": False}}
  ours = optim.optimizer("lamb", 0.01, weight_decay=0.1, b1=0.8, b2=0.99, eps=1e-6)
  theirs = optax.lamb(0.01, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1, mask=mask)
  _assert_trees_equal(_run(ours), _run(theirs))
  ours = optim.optimizer("lamb", 0.01, weight_decay=0.1, decay_all=True)
  theirs = optax.lamb(0.01, eps=1e-8, weight_decay=0.1)
  _assert_trees_equal(_run(ours), _run(theirs))
