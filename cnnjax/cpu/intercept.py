"""The one ``flax.linen`` method interceptor that lowers plain models' layers to this backend.

An interceptor rather than module fields (the Flax imagenet example's ``conv: ModuleDef``): the
models stay exactly the modules their papers describe, with no field that only a backend reads,
and the swap happens where the program starts. It creates no variables: at init every call goes
through unchanged, so ``init`` gives the same tree with or without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.cpu import batchnorm, build, conv, pool
from cnnjax.models import layers


def onednn_loaded() -> bool:
  """Whether the oneDNN extension is built and its FFI targets registered (built on first call)."""
  return build.load() is not None


def _conv(next_fun, args, kwargs, module):
  """A module with an unset ``conv_general_dilated`` field, run with oneDNN's convolution."""
  if module.conv_general_dilated is not None or getattr(module, "conv_general_dilated_cls", None):
    return next_fun(*args, **kwargs)
  fast = module.clone(parent=None, conv_general_dilated=conv.conv_general_dilated)
  return fast.apply({"params": module.variables["params"]}, *args, **kwargs)


def _batch_norm(next_fun, args, kwargs, module: nn.BatchNorm):
  """Training-mode statistics and normalization as oneDNN's primitive; the running averages
  updated as flax's ``BatchNorm`` updates them."""
  x = args[0]
  train = kwargs.get("use_running_average", args[1] if len(args) > 1 else None)
  train = module.use_running_average if train is None else train
  if not (train is False and kwargs.get("mask") is None and module.axis_name is None
          and module.axis in (-1, x.ndim - 1) and module.use_scale and module.use_bias
          and module.dtype in (None, jnp.float32) and module.param_dtype == jnp.float32):
    return next_fun(*args, **kwargs)
  scale = module.get_variable("params", "scale")
  bias = module.get_variable("params", "bias")
  if not batchnorm.takes(x, scale, bias):
    return next_fun(*args, **kwargs)
  y, mean, var = batchnorm.batch_norm(x, scale, bias, module.epsilon)
  keep = module.momentum
  for name, value in (("mean", mean), ("var", var)):
    old = module.get_variable("batch_stats", name)
    module.put_variable("batch_stats", name, keep * old + (1 - keep) * value)
  return y


def _max_pool(next_fun, args, kwargs, module: layers.Pool):
  x = args[0]
  if module.kind != "max" or x.ndim != 4:
    return next_fun(*args, **kwargs)
  pads = layers.pool_pads(x.shape, module.window, module.stride, module.padding, module.ceil_mode)
  return pool.max_pool(x, module.window, module.stride, pads)


def interceptor(next_fun, args, kwargs, context):
  """``nn.intercept_methods``'s interceptor: see the package docstring for what it lowers."""
  module = context.module
  if context.method_name != "__call__" or module.is_initializing():
    return next_fun(*args, **kwargs)
  if isinstance(module, layers.Pool):
    return _max_pool(next_fun, args, kwargs, module)
  if not onednn_loaded():
    return next_fun(*args, **kwargs)
  if isinstance(module, nn.BatchNorm):
    return _batch_norm(next_fun, args, kwargs, module)
  if hasattr(module, "conv_general_dilated") and not isinstance(module, nn.ConvLocal):
    return _conv(next_fun, args, kwargs, module)
  return next_fun(*args, **kwargs)


@contextlib.contextmanager
def lowering() -> Iterator[None]:
  """Plain models traced inside run on this backend (see the package docstring); a no-op unless
  JAX's default backend is CPU. Loads the extension (and registers its targets) on entry."""
  if jax.default_backend() != "cpu":
    yield
    return
  onednn_loaded()
  with nn.intercept_methods(interceptor):
    yield
