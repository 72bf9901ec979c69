# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Как работает фильтр (свёртка) — How a filter (convolution) works
#
# The course's picture: a small filter slides over the image; at each position it multiplies
# its weights with the pixels under it and sums ("multiplication and summation"). Where the
# image looks like the filter the sum is large, elsewhere it is small. After all positions it
# has produced an *activation map* (feature map); several filters give several maps.
#
# **What you will see** (all computed here):
# 1. the course's curve detector: its exact 7×7 filter on its two 7×7 receptive fields, 6600
#    on the curve and 0 elsewhere, computed by the convolution the models use;
# 2. the filter sliding over an image that contains both fields, and over a digit;
# 3. the course's shapes: a 32×32×3 image and one 5×5×3 filter give 28×28×1; two filters give
#    28×28×2;
# 4. the filters and feature maps of a LeNet-5 trained here for a minute on the embedded MNIST.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from cnnjax import config as config_lib
from cnnjax.inspect import course, graph, loading, visualize
from cnnjax.train import loop

OUT = os.environ.get("CNNJAX_COURSE_DIR") or tempfile.mkdtemp(prefix="cnnjax_course_")

# %% [markdown]
# ## The curve detector: 6600 against 0
#
# `cnnjax.inspect.course` holds the course's arrays as printed: the filter ("pixel
# representation of filter"), the receptive field on the mouse's back that has the curve, and
# the one elsewhere that hasn't.

# %%
kernel = course.curve_detector_filter()
fields = {"the curve": np.array(course.CURVE_FIELD, np.float32),
          "elsewhere": np.array(course.OTHER_FIELD, np.float32)}
print("filter:\n", kernel.astype(int))
for name, patch in fields.items():
  products = kernel * patch
  terms = " + ".join(f"({int(p)}*{int(k)})" for p, k in zip(patch[products > 0], kernel[products > 0]))
  print(f"\non {name}: {terms or 'no overlapping non-zero pixels'} = {products.sum():g};"
        f"  lax.conv gives {course.filter_response(kernel, patch):g}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, (title, a) in zip(axes, [("filter", kernel), *[(f"field: {n}\nresponse "
                                  f"{course.filter_response(kernel, p):g}", p) for n, p in fields.items()]]):
  ax.imshow(a, cmap="gray_r", vmin=0, vmax=50)
  for (i, j), v in np.ndenumerate(a):
    if v:
      ax.text(j, i, int(v), ha="center", va="center", fontsize=7, color="tab:red")
  ax.set_title(title)
  ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The filter slides over the image
#
# An image holding both fields (the curve at the top left, the other pattern at the bottom
# right) on a blank 20×20 canvas. A VALID convolution evaluates the filter at every position:
# the map below has one value per position of the filter's top-left corner.

# %%
canvas = np.zeros((20, 20), np.float32)
canvas[1:8, 2:9] = fields["the curve"]
canvas[12:19, 11:18] = fields["elsewhere"]


def slide(image, k):
  """VALID cross-correlation, as in every conv layer (jax.lax.conv_general_dilated)."""
  return np.asarray(jax.lax.conv_general_dilated(
      jnp.asarray(image)[None, :, :, None], jnp.asarray(k)[:, :, None, None], (1, 1), "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC")))[0, :, :, 0]


response = slide(canvas, kernel)
peak = np.unravel_index(response.argmax(), response.shape)
print(f"response map {response.shape[0]}x{response.shape[1]}; at the course's window (1, 2): "
      f"{response[1, 2]:g}; at the other pattern's (12, 11): {response[12, 11]:g}")
print(f"largest response: {response.max():g} at {tuple(map(int, peak))}")

# %% [markdown]
# The map is largest one row below the course's window: shifted down by one, all six of the
# filter's 30s land on 50s of the mouse's back (6·50·30), while the course's window catches the
# 20 and a 0. A filter answers "how much does this place look like me", and the best-matching
# place wins.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
axes[0].imshow(canvas, cmap="gray_r")
axes[0].add_patch(plt.Rectangle((peak[1] - 0.5, peak[0] - 0.5), 7, 7, fill=False, ec="tab:red", lw=2))
axes[0].set_title("image (red: where the filter fires most)")
im = axes[1].imshow(response, cmap="magma")
axes[1].set_title(f"activation map {response.shape[0]}x{response.shape[1]}")
fig.colorbar(im, ax=axes[1], fraction=0.046)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "02_sliding_filter.png"), dpi=100)
plt.show()

# %% [markdown]
# ## Shapes: 28×28×1, and 28×28×2 with two filters
#
# Along each axis a k×k filter with stride s and padding p on n pixels fits
# (n + 2p − k) / s + 1 times. `course.conv_output_shape` asks a real `flax` convolution
# (traced on shapes only) and agrees with the formula.

# %%
for filters in (1, 2):
  shape = course.conv_output_shape((32, 32, 3), kernel=5, filters=filters)
  print(f"32x32x3 image, {filters} filter(s) of 5x5x3 -> {'x'.join(map(str, shape))}"
        f"   (formula: {course.conv_output_size(32, 5)} per axis)")

# %% [markdown]
# ## Filters and feature maps of a trained LeNet-5
#
# LeNet-5 trained from Python with the library's training loop: a config from
# `cnnjax.config.defaults()` with a few overrides, and `cnnjax.train.loop.train(config,
# workdir)`: 150 steps of 128 digits (under 5 epochs of the 4,000). Then
# `cnnjax.inspect.loading.load` reads the run back and `cnnjax.inspect.visualize` gives the
# first layer's six 5×5 kernels and the feature maps of one test digit.

# %%
config = config_lib.defaults()
config.model, config.dataset = "lenet5", "mnist5k"
config.optimizer.learning_rate = 2e-3
config.num_steps, config.eval_every_epochs, config.log_every_steps = 150, 0.0, 50
config.steps_per_call = 8
workdir = os.path.join(OUT, "02_lenet")
final = loop.train(config, workdir, quiet=True)
print(f"test top-1 after 150 steps: {final['eval/top1']:.3f}")

# %%
item = loading.load(workdir)
g = graph.trace(item.model, item.variables, (1, *item.input_shape))
image, label = loading.dataset_image(item.dataset, 0)
x = jnp.asarray(item.preprocess(image[None]))
layers = visualize.spatial_layers(g)
maps = visualize.feature_maps(g, item.variables, x, layers)
kernels = visualize.first_layer_filters(g, item.variables)
print(f"first-layer kernels {kernels.shape}; feature maps:",
      ", ".join(f"{n} {'x'.join(map(str, maps[n].shape))}" for n in layers))

# %%
n = kernels.shape[0]
fig, axes = plt.subplots(1 + len(layers), n + 1, figsize=(1.5 * (n + 1), 1.6 * (1 + len(layers))))
for ax in axes.flat:
  ax.axis("off")
axes[0, 0].imshow(image[..., 0], cmap="gray")
axes[0, 0].set_title(f"digit {label}", fontsize=9)
for c in range(n):
  m = np.abs(kernels[c]).max()  # centred: red positive, blue negative weights
  axes[0, c + 1].imshow(kernels[c, ..., 0], cmap="RdBu_r", vmin=-m, vmax=m)
  axes[0, c + 1].set_title(f"filter {c}", fontsize=9)
for r, name in enumerate(layers, start=1):
  axes[r, 0].text(0.5, 0.5, f"{name}\n{'x'.join(map(str, maps[name].shape))}", ha="center",
                  va="center", fontsize=9)
  for c in range(min(n, maps[name].shape[-1])):
    axes[r, c + 1].imshow(maps[name][..., c], cmap="gray")
fig.suptitle("LeNet-5: first-layer filters (top), feature maps of one digit (first 6 channels)")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "02_lenet_feature_maps.png"), dpi=90)
plt.show()

# %% [markdown]
# Each first-layer map is one filter slid over the digit: bright where the digit has the edge
# or stroke that filter looks for. Deeper maps are smaller (pooling) and respond to
# combinations of the first layer's features.
