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
# # 6. Полносвязные слои — Fully connected layers, and LeNet-5
#
# The course: the fully connected layers look at the output of the previous layer (high-level
# feature maps) and determine which features go with which class — for a dog, the maps for paws
# or four legs should be high. The whole network in the course's picture is LeNet.
#
# **What you will see** (computed here):
# 1. LeNet-5 layer by layer (`cnnjax.inspect.summary`): where its parameters and its MACs are;
# 2. LeNet-5 trained on the embedded MNIST from Python (`cnnjax.config` +
#    `cnnjax.train.loop.train`), its curves read back from `metrics.jsonl`;
# 3. a confusion matrix of the 1,000 test digits (`cnnjax.train.predict`);
# 4. what the fully connected layers read: the 84 units of `pre_logits`, averaged per class;
# 5. why it predicts what it predicts: saliency (Simonyan et al. 2014) and Grad-CAM (Selvaraju
#    et al. 2017) from `cnnjax.inspect.visualize`.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from cnnjax import config as config_lib, files
from cnnjax.data import splits
from cnnjax.inspect import graph, loading, summary, visualize
from cnnjax.train import loop, predict

OUT = os.environ.get("CNNJAX_COURSE_DIR") or tempfile.mkdtemp(prefix="cnnjax_course_")

# %% [markdown]
# ## LeNet-5, layer by layer

# %%
s = summary.summarize("lenet5", num_classes=10)
print(summary.render(s, "table"))
dense = sum(r.params for r in s.rows if r.kind == "Dense")
conv = sum(r.macs for r in s.rows if r.kind.endswith("Conv"))
print(f"\nthe fully connected layers hold {dense:,} of the {s.totals['params']:,} parameters "
      f"({dense / s.totals['params']:.0%}); the convolutions do {conv / s.totals['macs']:.0%} "
      "of the multiply-accumulates")

# %% [markdown]
# ## Training from Python
#
# The config is `cnnjax.config.defaults()` (every key with its one default) with a few
# overrides; `loop.train(config, workdir)` trains, evaluates every epoch, saves checkpoints and
# returns the final evaluation: 5 epochs of the 4,000 digits. (`quiet=True`: no progress lines;
# every logged metric is in the workdir's `metrics.jsonl`, read back below.)

# %%
config = config_lib.defaults()
config.model, config.dataset = "lenet5", "mnist5k"
config.optimizer.name, config.optimizer.learning_rate = "adam", 2e-3
config.schedule.name, config.schedule.warmup_epochs = "cosine", 0.5
config.num_epochs, config.batch_size = 5.0, 128
config.data.max_shift = 2  # random shifts by up to 2 pixels
config.log_every_steps, config.steps_per_call, config.checkpoint_every_steps = 8, 8, 160
workdir = os.path.join(OUT, "06_lenet5")
final = loop.train(config, workdir, quiet=True)
print({k: round(v, 4) for k, v in final.items()})

# %%
rows = files.read_jsonl(os.path.join(workdir, files.METRICS))
train = [r for r in rows if "train/loss" in r]
evals = [r for r in rows if "eval/loss" in r]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].plot([r["step"] for r in train], [r["train/loss"] for r in train], label="train")
axes[0].plot([r["step"] for r in evals], [r["eval/loss"] for r in evals], "o-", label="test")
axes[0].set_yscale("log")
axes[0].set_title("loss")
axes[1].plot([r["step"] for r in train], [r["train/top1"] for r in train], label="train")
axes[1].plot([r["step"] for r in evals], [r["eval/top1"] for r in evals], "o-", label="test")
axes[1].set_title("top-1")
for ax in axes:
  ax.set_xlabel("step")
  ax.legend()
  ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "06_curves.png"), dpi=100)
plt.show()

# %% [markdown]
# ## Confusion matrix, and what the fully connected layers read
#
# `predict.predict(config, workdir)` gives the newest checkpoint's logits for every test digit,
# in order, computed as evaluation computes them. `loading.load(workdir)` rebuilds the model, its
# variables, its input transform and the test split, and `splits.arrays` gives that split as
# arrays (the digits and their labels). `graph.trace` names every layer's output;
# `graph.forward` returns any named output, here `pre_logits` (the 84 units of the last hidden
# fully connected layer).

# %%
predictions = predict.predict(config, workdir)
item = loading.load(workdir)
raw, labels = splits.arrays(item.dataset)
assert (predictions.labels == labels).all()  # the same digits, in the same order
predicted = predictions.predicted
g_all = graph.trace(item.model, item.variables, (len(raw), *item.input_shape))
_, taps = jax.jit(lambda v, x: graph.forward(g_all, v, x, ("pre_logits",)))(
    item.variables, jnp.asarray(item.preprocess(raw)))
confusion = np.zeros((10, 10), int)
np.add.at(confusion, (labels, predicted), 1)
print(f"test top-1 recomputed from the logits: {(predicted == labels).mean():.3f} "
      f"(loop.train said {final['eval/top1']:.3f})")
off = confusion - np.diag(np.diag(confusion))
i, j = np.unravel_index(off.argmax(), off.shape)
print(f"most frequent mistake: {off[i, j]} of the {confusion[i].sum()} test {i}s read as {j}")

hidden = np.asarray(taps["pre_logits"])
per_class = np.stack([hidden[labels == c].mean(0) for c in range(10)])

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 2]})
axes[0].imshow(confusion, cmap="Blues")
for (a, b), v in np.ndenumerate(confusion):
  axes[0].text(b, a, v, ha="center", va="center", fontsize=7,
               color="white" if v > confusion.max() / 2 else "black")
axes[0].set_xlabel("predicted")
axes[0].set_ylabel("true")
axes[0].set_xticks(range(10))
axes[0].set_yticks(range(10))
axes[0].set_title("confusion matrix (1,000 test digits)")
im = axes[1].imshow(per_class, cmap="viridis", aspect="auto")
axes[1].set_xlabel("pre_logits unit (84)")
axes[1].set_ylabel("true class")
axes[1].set_yticks(range(10))
axes[1].set_title("mean activation of each hidden FC unit, per class")
fig.colorbar(im, ax=axes[1], fraction=0.03)
fig.tight_layout()
fig.savefig(os.path.join(OUT, "06_confusion_and_fc.png"), dpi=100)
plt.show()

# %% [markdown]
# Each class lights up its own set of hidden units — the course's "paws and four legs" — and
# the last dense layer (`fc3`) weighs them into the ten scores.

# %%
selective = (per_class.max(0) - per_class.mean(0)) / (per_class.mean(0) + 1e-6)
top = np.argsort(-selective)[:5]
for u in top:
  print(f"unit {u:2d}: strongest for class {per_class[:, u].argmax()}, "
        f"{per_class[:, u].max() / (per_class[:, u].mean() + 1e-6):.1f}x its mean over classes")

# %% [markdown]
# ## Saliency and Grad-CAM
#
# * saliency: |∂ logit / ∂ pixel| of the predicted class — which pixels would change the score
#   most;
# * Grad-CAM: the last feature map a module produces, its channels weighted by the mean
#   gradient of the predicted class's logit — where in the image the evidence is, at the
#   resolution of that map, resized to the input.

# %%
g = graph.trace(item.model, item.variables, (1, *item.input_shape))
cam_layer = [name for name in visualize.spatial_layers(g) if g.site(name).module is not None][-1]
examples = [int(np.flatnonzero(labels == c)[0]) for c in (0, 3, 7)]
wrong = np.flatnonzero(predicted != labels)
examples += [int(wrong[0])] if len(wrong) else []
fig, axes = plt.subplots(3, len(examples), figsize=(2.6 * len(examples), 7.6))
for col, index in enumerate(examples):
  x = jnp.asarray(item.preprocess(raw[index:index + 1]))
  cls, sal = visualize.saliency(g, item.variables, x)
  cam = visualize.grad_cam(g, item.variables, x, cam_layer, cls)
  picture = raw[index, ..., 0]
  axes[0, col].imshow(picture, cmap="gray")
  axes[0, col].set_title(f"label {labels[index]}, predicted {cls}", fontsize=9)
  axes[1, col].imshow(sal, cmap="inferno")
  axes[1, col].set_title("saliency", fontsize=9)
  axes[2, col].imshow(picture, cmap="gray")
  axes[2, col].imshow(cam, cmap="jet", alpha=0.45)
  axes[2, col].set_title(f"Grad-CAM at {cam_layer}", fontsize=9)
for ax in axes.flat:
  ax.axis("off")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "06_saliency_gradcam.png"), dpi=90)
plt.show()
