"""The train step's optimisation parts: gradient accumulation against the plain step, the
moving average of the weights against hand-computed sequences."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from cnnjax.train import state as state_lib, step as step_lib


class Mlp(nn.Module):
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Dense(8)(x.reshape(len(x), -1)))
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(3)(x)


def _setup(batch_norm=False, tx=None, ema=False, batch=16):
  model = Mlp(batch_norm)
  rng = np.random.default_rng(0)
  data = {"image": jnp.asarray(rng.normal(size=(batch, 2, 2, 1)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 3, batch), jnp.int32)}
  variables = model.init(jax.random.key(1), data["image"])
  tx = tx or optax.sgd(0.5)
  state = state_lib.create(variables, tx, ema=ema)
  step = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, input_fn=lambda x: x),
                 static_argnames=("grad_accum_steps", "ema_decay", "ema_warmup"))
  return state, data, step


def _close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


@pytest.mark.parametrize("k", [2, 4])
def test_accumulated_gradients_equal_the_plain_step_without_batchnorm(k):
  state, data, step = _setup()
  plain, plain_sums = step(state, data, jax.random.key(0))
  accumulated, sums = step(state, data, jax.random.key(0), grad_accum_steps=k)
  _close(accumulated.params, plain.params, rtol=1e-5, atol=1e-7)
  _close(sums, plain_sums, rtol=1e-5)
  assert not np.allclose(plain.params["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])


def test_batchnorm_sees_each_micro_batch_and_updates_its_averages_k_times():
  """Micro-batch i holds rows i, i + K, …; the running mean moves once per micro-batch."""
  state, data, step = _setup(batch_norm=True)
  new, _ = step(state, data, jax.random.key(0), grad_accum_steps=2)
  params = state.params
  h = nn.relu(data["image"].reshape(16, -1) @ params["Dense_0"]["kernel"]
              + params["Dense_0"]["bias"])
  mean = state.batch_stats["BatchNorm_0"]["mean"]
  for rows in (h[0::2], h[1::2]):
    mean = 0.9 * mean + 0.1 * rows.mean(0)
  np.testing.assert_allclose(new.batch_stats["BatchNorm_0"]["mean"], mean, rtol=1e-5, atol=1e-7)


def _plus_one():
  """An 'optimizer' whose update adds 1 to every parameter: params after t steps are p0 + t."""
  return optax.GradientTransformation(
      lambda params: optax.EmptyState(),
      lambda grads, s, params=None: (jax.tree.map(jnp.ones_like, grads), s))


@pytest.mark.parametrize("warmup,expected", [
    (False, [0.5, 1.25, 2.125]),  # decay 0.5: e ← (e + p) / 2 with p = 1, 2, 3
    # decays min(0.9, (1 + t)/(10 + t)) = 0.1, 2/11, 0.25: e = 0.9, 1.8, 2.7
    (True, [0.9, 1.8, 2.7]),
])
def test_ema_follows_the_hand_computed_sequence(warmup, expected):
  state, data, step = _setup(tx=_plus_one(), ema=True)
  start = state.params
  decay = 0.9 if warmup else 0.5
  for t, e in enumerate(expected):
    state, _ = step(state, data, jax.random.key(0), ema_decay=decay, ema_warmup=warmup)
    _close(state.params, jax.tree.map(lambda p: p + t + 1, start), rtol=1e-6)
    _close(state.ema["params"], jax.tree.map(lambda p: p + e, start), rtol=1e-5, atol=1e-6)


def test_ema_averages_the_batch_statistics_too():
  state, data, step = _setup(batch_norm=True, ema=True)
  new, _ = step(state, data, jax.random.key(0), ema_decay=0.75)
  _close(new.ema["batch_stats"],
         jax.tree.map(lambda old, now: 0.75 * old + 0.25 * now, state.batch_stats,
                      new.batch_stats), rtol=1e-6)
  assert not np.allclose(new.batch_stats["BatchNorm_0"]["mean"],
                         state.batch_stats["BatchNorm_0"]["mean"])
  ema_view = new.with_ema_weights()
  assert ema_view.params is new.ema["params"] and ema_view.opt_state is new.opt_state


def test_decay_rule():
  assert float(state_lib.ema_decay(0.999, jnp.int32(0), True)) == pytest.approx(0.1)
  assert float(state_lib.ema_decay(0.999, jnp.int32(90), True)) == pytest.approx(91 / 100)
  assert float(state_lib.ema_decay(0.5, jnp.int32(90), True)) == pytest.approx(0.5)
  assert float(state_lib.ema_decay(0.999, jnp.int32(0), False)) == pytest.approx(0.999)


@flax.struct.dataclass
class StateBeforeEma:
  """The train state as checkpoints before EMA existed hold it."""
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: object


def test_without_ema_the_state_tree_is_the_one_older_checkpoints_hold():
  state, _, _ = _setup()
  assert state.ema == {}
  old = StateBeforeEma(state.step, state.params, state.batch_stats, state.opt_state)
  paths = lambda t: [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(t)[0]]
  assert paths(state) == paths(old)
  with_ema, _, _ = _setup(ema=True)
  added = set(paths(with_ema)) - set(paths(state))  # the averages of the params (no BatchNorm)
  assert added == {".ema['params']" + p[len(".params"):] for p in paths(state)
                   if p.startswith(".params")}
