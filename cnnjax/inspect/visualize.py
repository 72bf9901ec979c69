"""What a trained CNN computes and responds to, as pure, jit-compiled, seeded functions.

Each function takes a traced ``graph.Graph`` (its batch size is the batch the function works
on), the variables and inputs, and returns arrays (and the numbers a test can check); drawing
them is ``pictures``' job. Layers are named as in ``graph.Graph.sites``: the sown features
(``stem``, ``stage1`` ...), module paths (``conv1``, ``layer4_2``) and ``logits``; they are read
(and, for Grad-CAM, perturbed) through flax's ``apply`` by ``graph.forward``.

* ``first_layer_filters``: the first convolution's kernels, one tile per filter.
* ``feature_maps``: the activations of chosen layers for one input.
* ``effective_field``: the gradient of one unit with respect to the input (the *effective*
  receptive field, Luo et al. 2016) next to its theoretical field (``receptive``); the former is
  zero outside the latter by construction.
* ``maximise``: activation maximisation of each channel's centre unit — gradient ascent on the
  input with the regularisers of Yosinski et al. 2015 (L2 decay, periodic blur, jitter, clipping
  to the valid pixel range), seeded.
* ``top_patches``: for each channel, the dataset patches (each unit's theoretical field) that
  excite it most (Zeiler & Fergus 2014).
* ``saliency`` (Simonyan et al. 2014) and ``grad_cam`` (Selvaraju et al. 2017) for a prediction.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.errors import UserError
from cnnjax.inspect import graph as graph_lib

Graph = graph_lib.Graph


def _reader(g: Graph, names: Sequence[str]) -> Callable:
  """``(variables, x) -> (logits, {name: value})`` by ``graph.forward``, jitted once per names."""
  for name in names:
    g.site(name)  # unknown names fail here, listing the valid ones
  return _jitted_reader(g, tuple(names))


@functools.cache
def _jitted_reader(g: Graph, names: tuple[str, ...]) -> Callable:
  return jax.jit(lambda v, x: graph_lib.forward(g, v, x, names))


def spatial_layers(g: Graph) -> list[str]:
  """The sown features that are still images (N, h, w, C): the default layers to look at."""
  return [n for n in g.sown if len(g.shape(n)) == 4]


def first_layer_filters(g: Graph, variables: Any) -> np.ndarray:
  """The first convolution's kernel as (filters, k_h, k_w, in_channels)."""
  convs = sorted((e for e in g.analysis.events if e.kind == "conv"), key=lambda e: e.order)
  if not convs:
    raise UserError("the model has no convolution, so no first-layer filters.")
  path = graph_lib.module_path(convs[0].scope)
  owned = graph_lib.subtree(variables["params"], path)
  kernels = [k for k in jax.tree.leaves(owned) if np.ndim(k) == 4]
  if not kernels:
    raise UserError(f"the first convolution ({path or 'top level'}) has no 4-D kernel parameter.")
  return np.transpose(np.asarray(kernels[0]), (3, 0, 1, 2))


def feature_maps(g: Graph, variables: Any, x: jax.Array, names: Sequence[str]) -> dict:
  """{layer: activations of the first image}, e.g. (h, w, C) for a feature map."""
  _, taps = _reader(g, names)(variables, x)
  return {n: np.asarray(v[0]) for n, v in taps.items()}


def centre(shape: Sequence[int]) -> tuple[int, int]:
  return shape[1] // 2, shape[2] // 2


def field_box(g: Graph, name: str, i: int, k: int) -> tuple[int, int, int, int]:
  """Theoretical field of unit (i, k) of ``name``: (top, bottom, left, right), inclusive.

  In input pixels; it may reach past the image into the padding.
  """
  h, w = g.field(name)
  row = h.hull() if h.dim is None else dataclasses.replace(h, lo=h.lo[i:i + 1], hi=h.hi[i:i + 1])
  col = w.hull() if w.dim is None else dataclasses.replace(w, lo=w.lo[k:k + 1], hi=w.hi[k:k + 1])
  return int(row.lo[0]), int(row.hi[0]), int(col.lo[0]), int(col.hi[0])


@dataclasses.dataclass(frozen=True)
class Field:
  layer: str
  unit: tuple[int, int, int]  # (i, k, channel)
  activation: float
  gradient: np.ndarray  # (H, W): |d unit / d input|, summed over input channels
  box: tuple[int, int, int, int]  # theoretical field: top, bottom, left, right (inclusive)


def effective_field(g: Graph, variables: Any, x: jax.Array, name: str) -> Field:
  """The centre unit of ``name`` (its most active channel there) and both of its fields."""
  shape = g.shape(name)
  if len(shape) != 4:
    raise UserError(f"layer {name!r} has shape {shape}; a receptive field needs a feature map.")
  i, k = centre(shape)
  read = _reader(g, (name,))
  acts = np.asarray(read(variables, x)[1][name][0, i, k])
  c = int(np.argmax(acts))
  unit = jax.jit(jax.grad(lambda x: read(variables, x)[1][name][0, i, k, c]))
  grad = np.abs(np.asarray(unit(x))[0]).sum(-1)
  return Field(name, (i, k, c), float(acts[c]), grad, field_box(g, name, i, k))


def valid_range(preprocess: Callable, input_shape: Sequence[int]) -> tuple[jax.Array, jax.Array]:
  """Per-channel model-input values of black and white pixels (the range to clip to)."""
  ends = np.stack([np.zeros(input_shape, np.uint8), np.full(input_shape, 255, np.uint8)])
  y = jnp.asarray(preprocess(ends))
  return jnp.min(y, axis=(0, 1, 2)), jnp.max(y, axis=(0, 1, 2))


def _blur(x: jax.Array) -> jax.Array:
  """3×3 binomial blur of each channel (edge-padded)."""
  k = jnp.array([1.0, 2.0, 1.0]) / 4.0
  kernel = jnp.tile((k[:, None] * k[None, :])[:, :, None, None], (1, 1, 1, x.shape[-1]))
  padded = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
  return jax.lax.conv_general_dilated(padded, kernel, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=x.shape[-1])


@dataclasses.dataclass(frozen=True)
class Maximised:
  layer: str
  channels: np.ndarray
  images: np.ndarray  # (n, H, W, C) in the model's input space
  start: np.ndarray  # each target unit's activation on its starting noise
  final: np.ndarray  # ... and on the optimised image (without the surround term)


def maximise(g: Graph, variables: Any, name: str, channels: Sequence[int], lo, hi, *,
             seed: int = 0, steps: int = 256, lr: float = 0.02, decay: float = 0.005,
             blur_every: int = 4, jitter: int | None = None,
             surround: float = 0.1) -> Maximised:
  """Activation maximisation: image b maximises unit ``channels[b]`` of ``name``.

  The target is the centre unit of a feature map's channel (its response at one place, so the
  image shows what fills its receptive field; Yosinski et al. 2015), or the neuron itself of a
  vector layer (``pre_logits``, ``logits``). The ascent adds ``surround`` times the channel's
  mean (the "channel" objective of Olah et al. 2017): where a ReLU has switched the centre unit
  off on the starting noise, its own gradient is zero, the channel's is not. ``g`` must be traced
  at batch ``len(channels)``. The start is noise (0.1 of the pixel range) around the dataset's
  mean pixel (0 after normalisation); steps are normalised gradient steps of ``lr`` times the
  pixel range; every step decays the image towards the mean pixel by ``decay`` and jitters it by
  up to ``jitter`` pixels (default: half the layer's effective stride, 1 for a vector layer — a
  larger shift than the layer's own grid spacing scrambles what a fine unit sees), every
  ``blur_every`` steps blurs it.
  """
  n, shape = g.input_shape[0], g.shape(name)
  if len(channels) != n:
    raise ValueError(f"graph traced at batch {n} for {len(channels)} channels")
  g.site(name)
  if jitter is None:
    jumps = [a.jump for a in g.field(name) if a.jump is not None]
    jitter = max(jumps) // 2 if jumps else 1
  optimise = _optimiser(g, name, steps, lr, decay, blur_every, jitter, surround)
  images, start, final = jax.device_get(optimise(
      variables, jax.random.key(seed), jnp.asarray(channels), jnp.asarray(lo), jnp.asarray(hi)))
  return Maximised(name, np.asarray(channels), images, start, final)


@functools.cache
def _optimiser(g: Graph, name: str, steps: int, lr: float, decay: float, blur_every: int,
               jitter: int, surround: float) -> Callable:
  """The jitted ascent of ``maximise``, compiled once per graph, layer and settings."""
  n, shape = g.input_shape[0], g.shape(name)
  read = _jitted_reader(g, (name,))

  def objective(v, x, chans, surround=0.0):
    act = read(v, x)[1][name]
    if act.ndim == 4:
      unit = act[:, shape[1] // 2, shape[2] // 2] + surround * act.mean(axis=(1, 2))
      return unit[jnp.arange(n), chans]
    return act.reshape(n, -1)[jnp.arange(n), chans]

  @jax.jit
  def optimise(v, key, chans, lo, hi):
    mid, span = jnp.clip(0.0, lo, hi), hi - lo  # 0: the normalised input's mean pixel
    x0 = jnp.clip(mid + 0.1 * span * jax.random.normal(key, g.input_shape), lo, hi)

    def step(t, x):
      shift = jax.random.randint(jax.random.fold_in(key, t), (2,), -jitter, jitter + 1)
      rolled = lambda x: jnp.roll(x, shift, axis=(1, 2))
      grad = jax.grad(lambda x: objective(v, rolled(x), chans, surround).sum())(x)
      grad = grad / (jnp.mean(jnp.abs(grad), axis=(1, 2, 3), keepdims=True) + 1e-12)
      x = mid + (x + lr * span * grad - mid) * (1.0 - decay)
      x = jnp.where(t % blur_every == blur_every - 1, _blur(x), x)
      return jnp.clip(x, lo, hi)

    x = jax.lax.fori_loop(0, steps, step, x0)
    return x, objective(v, x0, chans), objective(v, x, chans)

  return optimise


def batches(images: Callable[[int], np.ndarray], count: int, size: int) -> Iterator:
  """(start, uint8 batch of ``size``, number real) over ``count`` images; the last is padded."""
  for start in range(0, count, size):
    idx = [min(i, count - 1) for i in range(start, start + size)]
    yield start, np.stack([images(i) for i in idx]), min(size, count - start)


@dataclasses.dataclass(frozen=True)
class Patches:
  layer: str
  channels: np.ndarray
  values: np.ndarray  # (channels, k) top activations
  images: np.ndarray  # (channels, k) dataset indices
  units: np.ndarray  # (channels, k, 2) (i, k) of the unit in the layer's map
  patches: np.ndarray  # (channels, k, r_h, r_w, C) display pixels in [0, 1]


def top_patches(g: Graph, variables: Any, preprocess: Callable, display: Callable,
                images: Callable[[int], np.ndarray], count: int, name: str,
                channels: Sequence[int], k: int = 8) -> Patches:
  """The ``k`` dataset images whose strongest unit of each channel fires most, with its field.

  ``images(i)`` is raw image i (uint8 HWC); ``preprocess`` maps a raw batch to model input on
  the host, ``display`` to [0, 1] pixels of the same geometry; ``g`` is traced at the batch size
  to stream with.
  """
  read = _reader(g, (name,))
  chans = np.asarray(channels)

  @jax.jit
  def best(v, x):
    act = read(v, x)[1][name]
    flat = act.reshape(act.shape[0], -1, act.shape[-1])[..., chans]
    return flat.max(axis=1), flat.argmax(axis=1)

  values, where = [], []
  for _, raw, real in batches(images, count, g.input_shape[0]):
    v, w = jax.device_get(best(variables, jnp.asarray(preprocess(raw))))
    values.append(v[:real]), where.append(w[:real])
  values, where = np.concatenate(values), np.concatenate(where)
  k = min(k, count)
  top = np.argsort(-values, axis=0, kind="stable")[:k].T  # (channels, k)
  shape = g.shape(name)
  grid = shape[1:3] if len(shape) == 4 else (1, 1)
  units = np.stack(np.unravel_index(np.take_along_axis(where.T, top, 1), grid), axis=-1)
  pictures = np.asarray(display(np.stack([images(i) for i in top.reshape(-1)])))
  boxes = [field_box(g, name, *u) if len(shape) == 4 else (0, pictures.shape[1] - 1, 0,
           pictures.shape[2] - 1) for u in units.reshape(-1, 2)]
  crops = np.stack([crop(p, b) for p, b in zip(pictures, boxes)])
  return Patches(name, chans, np.take_along_axis(values.T, top, 1), top, units,
                 crops.reshape(*top.shape, *crops.shape[1:]))


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
  """``image[top:bottom+1, left:right+1]``, zero where the box leaves the image."""
  top, bottom, left, right = box
  h, w = image.shape[:2]
  pad = max(0, -top, -left, bottom - h + 1, right - w + 1)
  padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)])
  return padded[top + pad:bottom + pad + 1, left + pad:right + pad + 1]


def saliency(g: Graph, variables: Any, x: jax.Array) -> tuple[int, np.ndarray]:
  """(predicted class, |d logit / d input| max over input channels) for the first image."""
  read = _reader(g, ())
  cls = int(np.argmax(read(variables, x)[0][0]))
  grad = jax.jit(jax.grad(lambda x: read(variables, x)[0][0, cls]))(x)
  return cls, np.abs(np.asarray(grad)[0]).max(-1)


def feature_gradient(g: Graph, variables: Any, x: jax.Array, name: str,
                     cls: int) -> tuple[np.ndarray, np.ndarray]:
  """(feature map ``name``, d logit[cls] / d that map), each (h, w, C), for the first image.

  The gradient is taken with respect to a perturbation added at ``name`` (zero, so the map is
  unchanged): see ``graph.forward``.
  """
  g.site(name)
  return tuple(np.asarray(a) for a in _feature_gradient(g, name)(variables, x, cls))


@functools.cache
def _feature_gradient(g: Graph, name: str) -> Callable:
  dtype = g.var(name).aval.dtype  # the map's own: a float32 add would promote a bfloat16 model

  @jax.jit
  def gradient(v, x, cls):
    def logit(delta):
      logits, maps = graph_lib.forward(g, v, x, (name,), add={name: delta})
      return logits[0, cls], maps[name]
    grads, maps = jax.grad(logit, has_aux=True)(jnp.zeros(g.shape(name), dtype))
    return maps[0], grads[0]

  return gradient


def grad_cam(g: Graph, variables: Any, x: jax.Array, name: str, cls: int) -> np.ndarray:
  """Grad-CAM of class ``cls`` at feature map ``name``, resized to the input, in [0, 1]."""
  shape = g.shape(name)
  if len(shape) != 4:
    raise UserError(f"layer {name!r} has shape {shape}; Grad-CAM needs a feature map.")
  acts, grads = feature_gradient(g, variables, x, name, cls)
  return np.asarray(_cam(jnp.asarray(acts), jnp.asarray(grads), g.input_shape[1:3]))


@functools.partial(jax.jit, static_argnums=2)
def _cam(acts: jax.Array, grads: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Selvaraju et al.'s map: ReLU of the channels weighted by their mean gradient, in [0, 1]."""
  m = jax.nn.relu(jnp.einsum("hwc,c->hw", acts, grads.mean(axis=(0, 1))))
  m = jax.image.resize(m, size, method="bilinear")
  return m / (m.max() + 1e-12)


def channel_choice(n_channels: int, limit: int) -> list[int]:
  """The first ``limit`` channels (all of them if fewer)."""
  return list(range(min(n_channels, limit)))


def grid_shape(n: int) -> tuple[int, int]:
  cols = math.ceil(math.sqrt(n))
  return math.ceil(n / cols), cols
