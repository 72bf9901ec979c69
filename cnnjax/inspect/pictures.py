"""Drawing ``visualize``'s arrays as PNGs, and the whole ``visualize`` command in one call.

``write_all`` computes every picture for one ``loading.Inspectable`` and returns, per file, the
numbers it shows (tile counts, activations before and after maximisation, field boxes), so
tests check the content of the pictures, not just that they exist. Figures are drawn with
matplotlib's object API on an Agg canvas of their own: importing or calling this module leaves
pyplot and the global backend (a notebook's, say) untouched.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import matplotlib
import numpy as np
from matplotlib import patches as mpatches
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnjax.errors import UserError
from cnnjax.inspect import graph as graph_lib
from cnnjax.inspect import loading, visualize

DPI = 80


def _figure(figsize: tuple[float, float]) -> Figure:
  """A figure on its own Agg canvas, outside pyplot (nothing to close, no global state)."""
  fig = Figure(figsize=figsize, dpi=DPI)
  FigureCanvasAgg(fig)
  return fig


def normalise(a: np.ndarray, axes=None) -> np.ndarray:
  """Min-max to [0, 1] (over ``axes``; constant arrays become 0.5)."""
  lo, hi = a.min(axis=axes, keepdims=True), a.max(axis=axes, keepdims=True)
  return np.where(hi > lo, (a - lo) / np.where(hi > lo, hi - lo, 1), 0.5)


def tile_grid(tiles: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
  """(n, h, w[, c]) tiles in [0, 1] -> one image, ``cols`` per row, ``gap`` pixels apart.

  The gaps are white in RGB grids and NaN (drawn white) in one-channel grids.
  """
  tiles = tiles if tiles.ndim == 4 else tiles[..., None]
  n, h, w, c = tiles.shape
  background = 1.0 if c == 3 else np.nan
  rows = -(-n // cols)
  grid = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, c), background, np.float32)
  for i, t in enumerate(tiles):
    r, q = divmod(i, cols)
    grid[gap + r * (h + gap):gap + r * (h + gap) + h, gap + q * (w + gap):gap + q * (w + gap) + w] = t
  return grid


def _show(grid: np.ndarray, title: str, path: str, cmap: str = "gray", scale: int = 1) -> None:
  grid = np.repeat(np.repeat(grid, scale, 0), scale, 1)
  h, w = grid.shape[:2]
  fig = _figure((max(w, 240) / DPI, (h + 30) / DPI))
  ax = fig.add_axes((0, 0, 1, h / (h + 30)))
  colours = matplotlib.colormaps[cmap].with_extremes(bad="white")
  ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap=colours, vmin=0, vmax=1,
            interpolation="nearest")
  ax.axis("off")
  fig.suptitle(title, fontsize=9, y=1 - 4 / (h + 30), va="top")
  fig.savefig(path, dpi=DPI)


def _scale(size: int, target: int = 480) -> int:
  return max(1, target // max(size, 1))


def _as_display(tiles: np.ndarray) -> np.ndarray:
  """Tiles with 1 or 3 channels stay; others are averaged to grey."""
  return tiles if tiles.shape[-1] in (1, 3) else tiles.mean(-1, keepdims=True)


def draw_filters(kernels: np.ndarray, path: str, title: str) -> int:
  tiles = normalise(_as_display(kernels), axes=(1, 2, 3))
  cols = visualize.grid_shape(len(tiles))[1]
  grid = tile_grid(tiles, cols)
  _show(grid, title, path, scale=_scale(grid.shape[1]))
  return len(tiles)


def draw_maps(maps: np.ndarray, path: str, title: str, limit: int) -> int:
  chans = np.moveaxis(maps[..., :limit], -1, 0)
  tiles = normalise(chans, axes=(1, 2))
  grid = tile_grid(tiles, visualize.grid_shape(len(tiles))[1])
  _show(grid, title, path, cmap="viridis", scale=_scale(grid.shape[1]))
  return len(tiles)


def _image(ax, picture: np.ndarray) -> None:
  ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)


def draw_fields(picture: np.ndarray, fields: Sequence[visualize.Field], path: str) -> None:
  fig = _figure((3.2 * len(fields), 3.6))
  axes = fig.subplots(1, len(fields), squeeze=False)
  h, w = picture.shape[:2]
  for ax, f in zip(axes[0], fields):
    _image(ax, picture)
    ax.imshow(normalise(f.gradient), cmap="inferno", alpha=0.6)
    top, bottom, left, right = f.box
    ax.add_patch(mpatches.Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1,
                                    fill=False, color="cyan", lw=1.5))
    ax.set_xlim(min(-0.5, left - 1), max(w - 0.5, right + 1))
    ax.set_ylim(max(h - 0.5, bottom + 1), min(-0.5, top - 1))
    ax.set_title(f"{f.layer} unit {f.unit[:2]} ch {f.unit[2]}\n"
                 f"theoretical RF {bottom - top + 1}x{right - left + 1} (box)", fontsize=8)
    ax.axis("off")
  fig.suptitle("effective RF = |d unit / d input| (heat) inside the theoretical RF", fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 0.93))
  fig.savefig(path, dpi=DPI)


def draw_prediction(picture: np.ndarray, sal: np.ndarray, cam: np.ndarray, path: str,
                    title: str, cam_layer: str) -> None:
  fig = _figure((8.4, 3.2))
  axes = fig.subplots(1, 3)
  _image(axes[0], picture)
  axes[0].set_title("input", fontsize=8)
  axes[1].imshow(normalise(sal), cmap="inferno")
  axes[1].set_title("saliency |d logit / d x|", fontsize=8)
  _image(axes[2], picture)
  axes[2].imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
  axes[2].set_title(f"Grad-CAM at {cam_layer}", fontsize=8)
  for ax in axes:
    ax.axis("off")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 0.93))
  fig.savefig(path, dpi=DPI)


def _file(layer: str) -> str:
  return layer.replace("/", "_").replace("#", "_")


def _pad_to(channels: list[int], n: int) -> list[int]:
  return channels + [channels[-1]] * (n - len(channels))


@dataclasses.dataclass(frozen=True)
class _Job:
  """What every picture of one ``write_all`` call shares."""

  item: loading.Inspectable
  out_dir: str
  g: graph_lib.Graph  # traced at batch 1
  x: Any  # the model input
  picture: np.ndarray  # the same image as [0, 1] pixels
  label: int | None
  layers: list[str]
  spatial: list[str]  # the layers that are feature maps
  max_channels: int

  def out(self, name: str) -> str:
    return os.path.join(self.out_dir, name)

  def channels(self, layer: str) -> list[int]:
    return visualize.channel_choice(self.g.shape(layer)[-1], self.max_channels)


def write_all(item: loading.Inspectable, out_dir: str, *, image: np.ndarray | None = None,
              index: int = 0, layers: Sequence[str] | None = None, seed: int = 0,
              steps: int = 256, max_channels: int = 16, top_k: int = 8, num_images: int = 1000,
              gradcam_layer: str | None = None) -> dict[str, dict[str, Any]]:
  """Writes every picture into ``out_dir``; returns {file name: the numbers it shows}."""
  label = None
  if image is None:
    if item.dataset is None:
      raise UserError("this source has no dataset; pass --image=FILE (and --dataset=NAME for "
                      "the top patches).")
    image, label = loading.dataset_image(item.dataset, index)
  g = graph_lib.trace(item.model, item.variables, (1, *item.input_shape))
  layers = list(layers or visualize.spatial_layers(g))
  job = _Job(item, out_dir, g, jnp.asarray(item.preprocess(image[None])),
             np.asarray(item.display(image[None]))[0], label, layers,
             [n for n in layers if len(g.shape(n)) == 4], max_channels)
  os.makedirs(out_dir, exist_ok=True)
  return {**_filters_and_maps(job), **_fields(job), **_maximisation(job, seed, steps),
          **_patches(job, top_k, num_images), **_prediction(job, gradcam_layer)}


def _filters_and_maps(job: _Job) -> dict:
  kernels = visualize.first_layer_filters(job.g, job.item.variables)
  title = f"{job.item.name}: first-layer filters ({len(kernels)})"
  report = {"filters.png": {"tiles": draw_filters(kernels, job.out("filters.png"), title)}}
  features = visualize.feature_maps(job.g, job.item.variables, job.x, job.spatial)
  for name in job.spatial:
    maps, f = features[name], f"features_{_file(name)}.png"
    title = f"{name}: {'x'.join(map(str, maps.shape))} feature maps"
    report[f] = {"channels": draw_maps(maps, job.out(f), title, job.max_channels)}
  return report


def _fields(job: _Job) -> dict:
  if not job.spatial:
    return {}
  fields = [visualize.effective_field(job.g, job.item.variables, job.x, n) for n in job.spatial]
  draw_fields(job.picture, fields, job.out("receptive_fields.png"))
  return {"receptive_fields.png": {f.layer: {"box": f.box, "gradient": f.gradient,
                                             "unit": f.unit} for f in fields}}


def _maximisation(job: _Job, seed: int, steps: int) -> dict:
  item, report = job.item, {}
  lo, hi = visualize.valid_range(item.preprocess, item.input_shape)
  g = graph_lib.trace(item.model, item.variables, (job.max_channels, *item.input_shape))
  for name in job.layers:
    chans = job.channels(name)
    m = visualize.maximise(g, item.variables, name, _pad_to(chans, job.max_channels), lo, hi,
                           seed=seed, steps=steps)
    n, f = len(chans), f"maximisation_{_file(name)}.png"
    pixels = (m.images[:n] - np.asarray(lo)) / np.asarray(hi - lo)
    grid = tile_grid(normalise(_as_display(pixels), axes=(1, 2, 3)), visualize.grid_shape(n)[1])
    what = "the centre unit of each channel" if name in job.spatial else "each unit"
    _show(grid, f"{name}: images that maximise {what} (seed {seed})", job.out(f),
          scale=_scale(grid.shape[1]))
    report[f] = {"channels": chans, "start": m.start[:n], "final": m.final[:n]}
  return report


def _patches(job: _Job, top_k: int, num_images: int) -> dict:
  item, report = job.item, {}
  if item.dataset is None:
    return report
  count = min(num_images, len(item.dataset))
  g = graph_lib.trace(item.model, item.variables, (min(100, count), *item.input_shape))
  raw = lambda i: loading.dataset_image(item.dataset, i)[0]
  for name in job.layers:
    p = visualize.top_patches(g, item.variables, item.preprocess, item.display, raw, count,
                              name, job.channels(name), top_k)
    f = f"top_patches_{_file(name)}.png"
    grid = tile_grid(p.patches.reshape(-1, *p.patches.shape[2:]), p.patches.shape[1])
    _show(grid, f"{name}: top {p.patches.shape[1]} of {count} images per channel (rows)",
          job.out(f), scale=_scale(grid.shape[1]))
    report[f] = {"values": p.values, "images": p.images, "patch_shape": p.patches.shape}
  return report


def _prediction(job: _Job, gradcam_layer: str | None) -> dict:
  cls, sal = visualize.saliency(job.g, job.item.variables, job.x)
  order = lambda n: job.g.analysis.order.get(job.g.var(n), -1)
  candidates = sorted((n for n in job.spatial or visualize.spatial_layers(job.g)
                       if job.g.site(n).module is not None), key=order)  # Grad-CAM can perturb
  if gradcam_layer is None and not candidates:
    raise UserError("no feature map to run Grad-CAM on; pass --gradcam_layer=LAYER.")
  layer = gradcam_layer or candidates[-1]
  cam = visualize.grad_cam(job.g, job.item.variables, job.x, layer, cls)
  truth = f", label {job.label}" if job.label is not None else ""
  draw_prediction(job.picture, sal, cam, job.out("saliency_gradcam.png"),
                  f"{job.item.origin}: predicted {cls}{truth}", layer)
  return {"saliency_gradcam.png": {"predicted": cls, "label": job.label, "gradcam_layer": layer}}


def caption(facts: dict[str, Any]) -> str:
  """One short parenthesised line about what a picture of ``write_all`` shows."""
  if "tiles" in facts:
    return f" ({facts['tiles']} filter tiles)"
  if "start" in facts:
    return (f" (target activation {np.mean(facts['start']):.3g} on the starting noise -> "
            f"{np.mean(facts['final']):.3g}, mean over {len(facts['channels'])} channels)")
  if "channels" in facts:
    return f" ({facts['channels']} channels)"
  if "patch_shape" in facts:
    n, k, h, w = facts["patch_shape"][:4]
    return f" ({n} channels x top {k}, patches {h}x{w})"
  if "predicted" in facts:
    label = "" if facts["label"] is None else f", label {facts['label']}"
    return f" (predicted {facts['predicted']}{label}; Grad-CAM at {facts['gradcam_layer']})"
  boxes = [f"{layer}: RF {f['box'][1] - f['box'][0] + 1}x{f['box'][3] - f['box'][2] + 1}"
           for layer, f in facts.items()]
  return f" ({'; '.join(boxes)})"
