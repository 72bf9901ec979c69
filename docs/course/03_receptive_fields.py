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
# # 3. Сверточный слой и рецептивное поле — The convolutional layer and the receptive field
#
# The course: "as you go deeper into the network, the filters work with an ever larger field of
# view, so they can process information from a larger area of the original image". The
# *receptive field* of a unit is the part of the input it can depend on.
#
# **What you will see** (computed here):
# 1. the *theoretical* receptive field of every layer of VGG-16, from `cnnjax.inspect.summary`
#    (interval analysis of the traced model: no weights, no images), and the textbook rule it
#    follows, `r_out = r_in + (k − 1)·j_in`, `j_out = j_in·s`;
# 2. the fields growing with depth in VGG-16, ResNet-18 and Inception v3, side by side;
# 3. the *effective* field of ResNet-20 units at increasing depth — the pixels that actually move
#    a unit, |∂unit/∂input| — drawn inside the theoretical box: it is always smaller.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from cnnjax import models
from cnnjax.data import sources, splits, transforms
from cnnjax.inspect import graph, pictures, summary, visualize

OUT = os.environ.get("CNNJAX_COURSE_DIR") or tempfile.mkdtemp(prefix="cnnjax_course_")

# %% [markdown]
# ## VGG-16, layer by layer
#
# `summary.summarize(name)` traces the model on shapes only and returns one row per layer with
# its output shape, parameters, MACs, receptive field (`rf`) and jump (the distance in input
# pixels between neighbouring units, `jump`).

# %%
vgg = summary.summarize("vgg16")
print(f"{'layer':10s} {'output':>12s} {'RF':>5s} {'jump':>5s}   check: r_prev + (k-1)*j_prev")
prev = vgg.rows[0]
for row in vgg.rows[1:]:
  if row.jump[0] is None:  # after flattening: one interval, the whole input hull
    print(f"{row.name:10s} {'x'.join(map(str, row.shape)):>12s} {row.rf[0]:5d} {'-':>5s}")
    continue
  kernel = 3 if row.name.startswith("conv") else 2  # VGG: 3x3 convolutions, 2x2 pools
  check = prev.rf[0] + (kernel - 1) * prev.jump[0]
  print(f"{row.name:10s} {'x'.join(map(str, row.shape)):>12s} {row.rf[0]:5d} {row.jump[0]:5d}"
        f"   {prev.rf[0]} + {kernel - 1}*{prev.jump[0]} = {check}"
        f"{'' if check == row.rf[0] else '  <- differs'}")
  prev = row
pool5 = next(r for r in vgg.rows if r.name == "pool5")
assert (pool5.rf[0], pool5.jump[0]) == (212, 32)  # Araujo, Norris & Sim, Distill 2019, Table 1

# %% [markdown]
# Each 3×3 convolution adds 2 jumps; each 2×2 pool adds 1 jump and doubles the jump. By
# `pool5` a unit sees 212×212 pixels of the 224×224 input (Araujo et al., Distill 2019, Table 1
# gives the same 212 and 32). A dense layer sees the hull of everything its inputs see.

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.8))
for name in ("vgg16", "resnet18", "inception_v3"):
  s = vgg if name == "vgg16" else summary.summarize(name)
  rows = [r for r in s.rows[1:] if r.jump[0] is not None and r.kind.lower() in ("conv",)]
  ax.plot(range(1, len(rows) + 1), [r.rf[0] for r in rows], marker=".", label=name)
  print(f"{name:13s} {len(rows):3d} convolutions; the last one's field: {rows[-1].rf[0]} pixels "
        f"of a {s.input_shape[0]}x{s.input_shape[1]} input")
ax.set_xlabel("convolution, in forward order")
ax.set_ylabel("theoretical receptive field (pixels)")
ax.set_title("Deeper units see more of the image")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "03_rf_growth.png"), dpi=100)
plt.show()

# %% [markdown]
# The dips are parallel paths: ResNet's 1×1 downsampling shortcuts and the 1×1 branches of
# Inception modules see less than the stacked 3×3 paths beside them; a block's output sees the
# widest of its paths.
#
# ## Effective receptive fields
#
# The theoretical field says which pixels a unit *can* depend on. How much it *does* is the
# gradient of the unit with respect to each pixel: zero where a ReLU is off or a max pool picked
# another pixel, and small near the border of the box, because far pixels reach the unit along
# few paths (Luo et al. 2016). `visualize.effective_field` takes the centre unit of a layer (its
# most active channel), computes both, and `pictures.draw_fields` draws them.
#
# ResNet-20 (He et al. 2016, the CIFAR model; 0.27 M parameters), freshly initialised, on one
# embedded MNIST digit resized to 32×32 and tiled to 3 channels.

# %%
model = models.create("resnet20", num_classes=10)
variables = models.init_variables(model, jax.random.key(0), (1, 32, 32, 3))
g = graph.trace(model, variables, (1, 32, 32, 3))
test = sources.load("mnist5k", "test")
digit = splits.arrays(test)[0][:1]
picture = np.asarray(transforms.to_model_input(digit, size=32, channels=3, mean=(0.0,),
                                               std=(1.0,)))
x = jnp.asarray((picture - test.mean[0]) / test.std[0])  # the training set's statistics
layers = visualize.spatial_layers(g)
fields = [visualize.effective_field(g, variables, x, name) for name in layers]


def mass_width(gradient, share=0.9):
  """Width of the smallest centred square holding ``share`` of the gradient's total."""
  h, w = gradient.shape
  total = gradient.sum()
  for r in range(max(h, w)):
    c = (h // 2, w // 2)
    inside = gradient[max(0, c[0] - r):c[0] + r + 1, max(0, c[1] - r):c[1] + r + 1].sum()
    if inside >= share * total:
      return 2 * r + 1
  return max(h, w)


for f in fields:
  top, bottom, left, right = f.box
  print(f"{f.layer:8s} theoretical {bottom - top + 1:3d}x{right - left + 1:<3d}"
        f" 90% of |d unit / d input| within the centre {mass_width(f.gradient):2d}x"
        f"{mass_width(f.gradient)}")
path = os.path.join(OUT, "03_effective_fields.png")
pictures.draw_fields(picture[0], fields, path)
display(Image(path))

# %% [markdown]
# Both grow with depth, and the effective field is always a concentrated blob inside a box
# that soon exceeds the 32×32 image: deep units *could* use the whole digit, and mostly weigh
# its middle.
