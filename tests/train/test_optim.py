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
