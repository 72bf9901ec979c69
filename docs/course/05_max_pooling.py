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
# # 5. Max pooling — Субдискретизация (подвыборка)
#
# The course: a pooling (subsampling, downsampling) layer takes small separate pieces of the
# image (usually 2×2) and merges each into one value; of the several ways to merge, taking the
# largest of the four pixels is the most common.
#
# **What you will see** (computed here):
# 1. 2×2 max and average pooling on a small array and on a digit, with `layers.pool`, the
#    function the models call: a quarter of the values survive;
# 2. what each keeps, measured: how much of the strongest responses survive, and how much the
#    pooled map moves when the image shifts by one pixel;
# 3. LeNet-5 trained with max and with average pooling on the same seeds.

# %%
import os
import tempfile

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from cnnjax import compilation, config as config_lib
from cnnjax.data import splits
from cnnjax.inspect import course
from cnnjax.models import layers
from cnnjax.train import loop

OUT = os.environ.get("CNNJAX_COURSE_DIR") or tempfile.mkdtemp(prefix="cnnjax_course_")


def pool(a, kind):
  """2×2 pooling, stride 2, of an (H, W) array with the models' own ``layers.pool``."""
  return np.asarray(layers.pool(jnp.asarray(a, jnp.float32)[None, :, :, None], kind, 2, 2))[0, :, :, 0]


# %% [markdown]
# ## On a 4×4 array

# %%
a = np.array(course.POOL_INPUT, np.float32)
print("input:\n", a.astype(int))
print("2x2 max pool:\n", pool(a, "max"))
print("2x2 average pool:\n", pool(a, "avg"))
assert (pool(a, "max") == course.max_pool_2x2()).all()

# %% [markdown]
# ## On a digit

# %%
images = splits.arrays("mnist5k", "test")[0][..., 0].astype(np.float32) / 255.0
digit = images[0]
fig, axes = plt.subplots(1, 3, figsize=(8, 3))
for ax, (title, im) in zip(axes, [("28x28 digit", digit), ("max pool 14x14", pool(digit, "max")),
                                   ("average pool 14x14", pool(digit, "avg"))]):
  ax.imshow(im, cmap="gray", vmin=0, vmax=1)
  ax.set_title(title)
  ax.axis("off")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "05_pooled_digit.png"), dpi=100)
plt.show()

# %% [markdown]
# ## What each keeps, measured on 1,000 test digits
#
# * **peak kept**: the brightest pixel of each 2×2 block is what a feature detector's strongest
#   response looks like. Max pooling keeps it exactly; averaging dilutes it with its neighbours.
#   Measured as the mean pooled value over blocks that contain any stroke, divided by those
#   blocks' mean maximum.
# * **shift**: a one-pixel shift of the image (right, then down) changes the pooled map by this
#   fraction of its norm; without pooling the map changes by the same measure at full size.

# %%
def shift(x, dy, dx):
  return np.roll(x, (dy, dx), axis=(-2, -1))


batch = jnp.asarray(images)[:, :, :, None]
pooled = {k: np.asarray(layers.pool(batch, k, 2, 2))[..., 0] for k in ("max", "avg")}
block_max = pooled["max"]
stroke = block_max > 0
print(f"values kept: {pooled['max'][0].size} of {images[0].size} "
      f"({pooled['max'][0].size / images[0].size:.0%})")
for k in ("max", "avg"):
  print(f"{k} pool keeps {pooled[k][stroke].mean() / block_max[stroke].mean():.0%} of the "
        "blocks' peak brightness")

for dy, dx in ((0, 1), (1, 0)):
  moved = jnp.asarray(shift(images, dy, dx))[:, :, :, None]
  change = {"none": np.linalg.norm(shift(images, dy, dx) - images) / np.linalg.norm(images)}
  for k in ("max", "avg"):
    after = np.asarray(layers.pool(moved, k, 2, 2))[..., 0]
    change[k] = np.linalg.norm(after - pooled[k]) / np.linalg.norm(pooled[k])
  print(f"shift by ({dy}, {dx}): relative change without pooling {change['none']:.2f}, "
        f"after max pool {change['max']:.2f}, after average pool {change['avg']:.2f}")

# %% [markdown]
# Both pools leave a map that moves less under a one-pixel shift than the image itself does:
# a feature can move inside its 2×2 block and still land in the same pooled cell. What tells
# them apart is the peak: max pooling passes the strongest response on unchanged, averaging
# dilutes it (and blurs thin strokes, visible in the picture).
#
# ## Max against average in LeNet-5
#
# The same LeNet-5, `model_options.pool` = `max` or `avg`, 2 seeds × 80 steps each (same data
# per seed). Tiny runs: what matters is that both pools learn and how far apart they land.

# %%
compilation.persistent_cache()  # later seeds load the programs the first one compiled
SEEDS, STEPS = 2, 80
top1 = {}
for kind in ("max", "avg"):
  for seed in range(SEEDS):
    config = config_lib.defaults()
    config.model, config.dataset, config.seed = "lenet5", "mnist5k", seed
    config.model_options.pool = kind
    config.batch_size, config.num_steps = 64, STEPS
    config.eval_every_epochs, config.log_every_steps = 0.0, 20
    config.checkpoint_every_steps = STEPS
    workdir = os.path.join(OUT, "05_pool", f"{kind}_{seed}")
    top1[kind, seed] = loop.train(config, workdir, quiet=True)["eval/top1"]

for kind in ("max", "avg"):
  values = [top1[kind, s] for s in range(SEEDS)]
  print(f"{kind} pool: test top-1 {np.mean(values):.3f} (seeds: {', '.join(f'{v:.3f}' for v in values)})")
diff = np.mean([top1["max", s] - top1["avg", s] for s in range(SEEDS)])
print(f"max - avg, paired by seed: {diff:+.3f}")
