"""Helpers shared by the model tests: cheap variables, one-shot compiled applies, BN set-up."""

import math

import jax
import jax.numpy as jnp
import numpy as np

# Optimisation level 0 roughly halves XLA's compile time on CPU; the tests only need the numbers.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def param_count(model, size, channels=3):
  """Trainable parameters, counted on an abstract init (nothing allocated)."""
  x = jnp.zeros((1, size, size, channels))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))


def noise_variables(model, x):
  """Variables shaped by ``model.init`` (traced with ``eval_shape``), filled with scaled noise.

  Running ``init`` itself costs minutes of XLA compilation and CPU random numbers on 2 cores;
  these tests only need the tree it makes, with activations of a sensible scale.
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


def fast_apply(model, variables, x, train):
  """``model.apply`` (BN stats and intermediates mutable) as one quickly compiled computation."""
  def run(variables, x):
    return model.apply(variables, x, train=train, rngs={"dropout": jax.random.key(2)},
                       mutable=["batch_stats", "intermediates"])

  return jax.jit(run).lower(variables, x).compile(FAST_COMPILE)(variables, x)


def normal_input(size, batch=2):
  return jax.random.normal(jax.random.key(1), (batch, size, size, 3))


def randomise_bn(torch, net, batch):
  """Random BN affine params, then running stats from ``batch``, perturbed: every BN tensor
  matters in the parity tests, and activations keep unit scale through deep random nets."""
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


def tree_shapes(tree):
  return jax.tree.map(lambda a: tuple(a.shape), tree)


def numpy_input(size, batch=2, seed=0):
  return np.random.default_rng(seed).standard_normal((batch, size, size, 3), np.float32)


def abstract_variables(model, size, batch=2):
  """The variables ``model.init`` makes for (batch, size, size, 3) inputs, as shapes only."""
  x = jnp.zeros((batch, size, size, 3))
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
