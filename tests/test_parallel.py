"""Data parallelism: a train step on 8 devices equals the same step on 1 device."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from cnnjax import models, parallel
from cnnjax.errors import UserError
from cnnjax.train import state as state_lib, step as step_lib


class TinyBN(nn.Module):
  """A small conv net with BatchNorm, whose statistics must be global-batch statistics."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(8, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x)
    return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


def _one_step(devices, batch, **options):
  mesh = parallel.make_mesh(devices)
  model, tx = TinyBN(), optax.sgd(0.1, momentum=0.9)
  variables = models.init_variables(model, jax.random.key(0), (1, 8, 8, 1))
  ema = bool(options.get("ema_decay"))
  state = parallel.replicate(state_lib.create(variables, tx, ema=ema), mesh)
  fn = functools.partial(step_lib.train_step, model=model, tx=tx,
                         input_fn=lambda x: x.astype(jnp.float32) / 255.0, **options)
  rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  fn = jax.jit(fn, in_shardings=(rep, data, rep), out_shardings=(rep, rep))
  global_batch = parallel.to_global(batch, mesh)
  assert len(global_batch["image"].sharding.device_set) == len(devices)
  new_state, sums = fn(state, global_batch, jax.random.key(1))
  return jax.device_get(new_state), jax.device_get(sums)


@pytest.mark.parametrize("options", [{}, {"grad_accum_steps": 2, "ema_decay": 0.5}],
                         ids=["plain", "accumulated+ema"])
def test_eight_devices_match_one(options):
  """With 2 micro-batches each device holds one row of each: still the one-device step."""
  assert jax.device_count() == 8, "conftest sets 8 virtual CPU devices"
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (16, 8, 8, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, 16).astype(np.int32)}
  one_state, one_sums = _one_step(jax.devices()[:1], batch, **options)
  eight_state, eight_sums = _one_step(jax.devices(), batch, **options)
  for a, b in zip(jax.tree.leaves(one_state), jax.tree.leaves(eight_state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The running statistics moved, and moved identically (global-batch statistics).
  assert not np.allclose(one_state.batch_stats["BatchNorm_0"]["mean"], 0)
  for k in one_sums:
    np.testing.assert_allclose(one_sums[k], eight_sums[k], rtol=1e-5)


def test_batch_size_must_divide_over_devices():
  mesh = parallel.make_mesh(jax.devices())
  parallel.check_batch_size(16, mesh)
  with pytest.raises(UserError, match=r"batch_size=12 is not divisible by the 8 devices"):
    parallel.check_batch_size(12, mesh)


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_process_rows_cover_the_batch_once_and_match_one_process(processes):
  devices = jax.devices()[:4]  # pretend consecutive pairs (or singles) are separate processes
  mesh, batch = parallel.make_mesh(devices), 16
  groups = np.array_split(np.arange(4), processes)
  rows = [parallel.process_rows(mesh, batch, [devices[i] for i in g]) for g in groups]
  np.testing.assert_array_equal(np.sort(np.concatenate(rows)), np.arange(batch))
  for d in devices:  # a device's rows are the one-process case's, whoever feeds it
    np.testing.assert_array_equal(parallel.process_rows(mesh, batch, [d]),
                                  np.arange(batch)[_rows_of(mesh, batch, d)])
  np.testing.assert_array_equal(parallel.process_rows(mesh, batch), np.arange(batch))


def _rows_of(mesh, batch, device):
  return parallel.batch_sharding(mesh).devices_indices_map((batch,))[device][0]


def test_process_rows_follow_the_mesh_order_not_the_device_ids():
  devices = jax.devices()[:4]
  mesh = parallel.make_mesh([devices[i] for i in (2, 0, 3, 1)])  # an interleaved mesh
  np.testing.assert_array_equal(parallel.process_rows(mesh, 8, devices[:2]), [2, 3, 6, 7])


def test_to_global_puts_each_devices_rows_on_it():
  devices = jax.devices()[:4]
  mesh = parallel.make_mesh([devices[i] for i in (2, 0, 3, 1)])
  batch = {"x": np.arange(8 * 3).reshape(8, 3)}
  x = parallel.to_global(batch, mesh)["x"]
  np.testing.assert_array_equal(np.asarray(x), batch["x"])
  for shard in x.addressable_shards:
    np.testing.assert_array_equal(shard.data, batch["x"][shard.index])
  two = batch["x"].reshape(2, 4, 3)  # two stacked batches of 4
  stacked = parallel.to_global({"x": two}, mesh, batch_axis=1)["x"]
  assert tuple(stacked.sharding.spec) == (None, parallel.DATA_AXIS)
  for shard in stacked.addressable_shards:  # each device: its row of both batches
    assert shard.data.shape == (2, 1, 3)
    np.testing.assert_array_equal(shard.data, two[shard.index])
