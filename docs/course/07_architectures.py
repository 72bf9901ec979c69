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
# # 7. Архитектуры свёрточных сетей — CNN architectures
#
# The course lists LeNet, AlexNet, ZF Net, GoogLeNet, VGGNet (LSVRC 2014: "deeper networks give
# better results"), ResNet and Inception v3, and prints VGG-16's memory and weights layer by
# layer, ending in "TOTAL memory: 24M * 4 bytes ~= 93MB / image (only forward! ~*2 for bwd)"
# and "TOTAL params: 138M parameters".
#
# **What you will see** (computed here, from shapes alone: no weights are allocated):
# 1. the seven architectures from the model registry side by side: parameters, MACs
#    (multiply-accumulates) per image, convolutions, activation memory;
# 2. the course's VGG-16 table recomputed row by row by `cnnjax.inspect.summary`, its 138M
#    parameters, and where its "93MB" does and doesn't come from.

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from cnnjax import models
from cnnjax.inspect import summary

OUT = os.environ.get("CNNJAX_COURSE_DIR") or tempfile.mkdtemp(prefix="cnnjax_course_")

# %% [markdown]
# ## Seven networks, in the course's order
#
# `summary.summarize(name)` traces the registered model at its natural input size
# (`models.get_spec(name).input_size`) with 1000 classes (10 for LeNet-5) and returns per-layer
# rows and totals.

# %%
NAMES = ("lenet5", "alexnet", "zfnet", "googlenet", "vgg16", "resnet50", "inception_v3")
tables = {name: summary.summarize(name) for name in NAMES}
print(f"{'model':13s} {'input':>9s} {'params':>13s} {'MACs':>16s} {'convs':>6s} "
      f"{'activations':>12s} {'fwd memory':>11s}")
for name, s in tables.items():
  t = s.totals
  convs = sum(r.kind.endswith("Conv") for r in s.rows)
  print(f"{name:13s} {'x'.join(map(str, s.input_shape)):>9s} {t['params']:13,d} "
        f"{t['macs']:16,d} {convs:6d} {t['activations']:12,d} "
        f"{t['activation_bytes'] / 1e6:8.1f} MB")

# %%
fig, ax = plt.subplots(figsize=(7.5, 4.6))
for name, s in tables.items():
  p, m = s.totals["params"], s.totals["macs"]
  ax.scatter(m, p, s=40)
  below = name in ("zfnet", "inception_v3")  # neighbours of alexnet and resnet50: label below
  ax.annotate(name, (m, p), textcoords="offset points", xytext=(5, -12 if below else 4),
              fontsize=9)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("MACs per image")
ax.set_ylabel("parameters")
ax.set_title("Parameters against compute, from the registry")
ax.grid(alpha=0.3, which="both")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "07_params_vs_macs.png"), dpi=100)
plt.show()

# %% [markdown]
# Where the parameters sit: the dense layers. AlexNet, ZFNet and VGG-16 keep most of theirs in
# the fully connected head; GoogLeNet, ResNet and Inception v3 pool globally before one small
# dense layer, and spend their budget on convolutions.

# %%
for name, s in tables.items():
  dense = sum(r.params for r in s.rows if r.kind == "Dense")
  print(f"{name:13s} dense layers: {dense / s.totals['params']:6.1%} of the parameters")

# %% [markdown]
# ## The course's VGG-16 table, recomputed
#
# Each row: output shape, "memory" (values in the output), "weights" (kernel parameters, without
# biases, as the course counts them).

# %%
vgg = tables["vgg16"]


def short(n):
  return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


for r in vgg.rows:
  kind = {"input": "INPUT", "Conv": f"CONV3-{r.shape[-1]}", "Pool": "POOL2",
          "Dense": "FC"}.get(r.kind, r.kind)
  shape = "x".join(map(str, r.shape if len(r.shape) == 3 else (1, 1, *r.shape)))
  print(f"{kind:10s} [{shape:>13s}]  memory: {short(r.activations):>6s}  weights: {r.weights:,}")
t = vgg.totals
weights = sum(r.weights for r in vgg.rows)
print(f"\nweights (the course's column) {weights:,} + biases {t['params'] - weights:,} "
      f"= {t['params']:,} parameters: the course's '138M'")

# %% [markdown]
# ### Where "93MB" comes from
#
# Summing the course's own memory column (every row's output, the input included) gives the
# total below; at 4 bytes per float32 value that is the forward activation memory of one image.
# Then the course's two numbers, 24M and 93MB, checked against it and against each other:

# %%
values = t["activations"]
conv_outputs = sum(r.activations for r in vgg.rows if r.kind == "Conv")
print(f"sum of the memory column:          {values:,} values (~{values / 1e6:.1f}M)")
print(f"x 4 bytes:                         {4 * values:,} bytes = {4 * values / 1e6:.1f} MB "
      f"= {4 * values / 2**20:.1f} MiB (summarize: activation_bytes {t['activation_bytes']:,})")
print(f"x 2 for the backward pass:         {t['activation_bytes_fwd_bwd'] / 1e6:.1f} MB")
print(f"the course's 24M x 4 bytes:        {24e6 * 4:,.0f} bytes = {24e6 * 4 / 1e6:.0f} MB "
      f"= {24e6 * 4 / 2**20:.1f} MiB")
print(f"24M / the real sum:                {24e6 / values:.2f}")
print(f"counting each conv output twice (before and after ReLU): "
      f"{(values + conv_outputs) / 1e6:.1f}M values")
print(f"values that 93 MB would be:        {93e6 / 4 / 1e6:.2f}M; 93 MiB: {93 * 2**20 / 4 / 1e6:.2f}M")

# %% [markdown]
# So the rows are right and the total is not. "93MB" is 24.4M values × 4 bytes counted in
# binary megabytes (MiB): it follows from a "24M" that is a rounded 24.4M. But the rows add up
# to 15.2M values, 61 MB (58 MiB) per image forward and about twice that with the backward
# pass; the 24M matches no way of counting them (not even every conv output twice, before and
# after its ReLU). `summarize` reports the rows' sum (docs/inspect.md has the same accounting).
# Most of the memory is in the first layers (large maps), most of the parameters in the last
# (the dense head):

# %%
early = sum(r.activations for r in vgg.rows[:6])
fc = sum(r.params for r in vgg.rows if r.kind == "Dense")
print(f"the input and the first two blocks hold {early / values:.0%} of the activations; "
      f"the three FC layers {fc / t['params']:.0%} of the parameters")
