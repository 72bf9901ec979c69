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
# # 8. Transfer learning — Перенос обучения
#
# The course: in practice convolutional networks are rarely trained from scratch, because a
# large enough data set is hard to collect; a network pretrained elsewhere serves as the
# initialisation. Deep networks are expensive to train (weeks on hundreds of GPUs for the
# largest). And: what do the layers of a network remember (*что запоминают слои сети*)?
#
# **What you will see**, end to end on the embedded data (no downloads):
# 1. LeNet-5 pretrained on the embedded MNIST (4,000 digits of 28×28);
# 2. a new, small task: scikit-learn's UCI digits (8×8 scans, upsampled to 28×28: other
#    writers, another scanner, another resolution) with only **2 labelled images per class**;
# 3. four ways to learn it, each from Python with `config.init_from` and
#    `config.finetune.mode`: from scratch, a linear probe (only the new head trains), freezing
#    the convolutions (the fully connected layers train), full fine-tuning (everything trains);
# 4. what the layers remember: how far full fine-tuning moved each layer's weights.
#
# With a torchvision weights file at hand the same `config.init_from` takes converted weights
# (`python -m cnnjax.transfer --model=resnet18 --weights=... --out=DIR`, then
# `config.init_from = DIR`): see docs/transfer.md.

# %%
import os
import tempfile

import jax
import numpy as np

from cnnjax import compilation, config as config_lib
from cnnjax.inspect import loading
from cnnjax.train import loop

OUT = os.environ.get("CNNJAX_COURSE_DIR") or tempfile.mkdtemp(prefix="cnnjax_course_")
compilation.persistent_cache()  # the runs after the first load the programs it compiled


def lenet_config(**overrides):
  config = config_lib.defaults()
  config.model = "lenet5"
  config.optimizer.name, config.schedule.name = "adam", "cosine"
  config.update(overrides)
  return config


# %% [markdown]
# ## 1. Pretraining on MNIST

# %%
pre_dir = os.path.join(OUT, "08_pretrain")
pre = loop.train(lenet_config(dataset="mnist5k", num_steps=150, batch_size=128,
                              eval_every_epochs=0.0, log_every_steps=50, steps_per_call=8,
                              checkpoint_every_steps=150), pre_dir, quiet=True)
print(f"pretrained LeNet-5: {pre['eval/top1']:.3f} top-1 on the 1,000 MNIST test digits")

# %% [markdown]
# ## 2–3. Two labels per class, four ways
#
# `init_from` names the pretraining workdir: its newest checkpoint fills the fresh model, except
# the leaves matching `init_skip` (`head`: every leaf whose shape depends on the number of
# classes), which keep their new initialisation. `finetune.mode` chooses what trains:
# `linear_probe` (the head only), `freeze` with `freeze_until="conv2"` (everything up to and
# including `conv2` is frozen), `full`. The seed picks the 20 labelled digits and the head's
# initialisation, the same for every way.

# %%
WAYS = {
    "from scratch": {},
    "linear probe": {"init_from": pre_dir, "init_skip": ("head",),
                     "finetune": {"mode": "linear_probe"}},
    "frozen convolutions": {"init_from": pre_dir, "init_skip": ("head",),
                            "finetune": {"mode": "freeze", "freeze_until": "conv2"}},
    "full fine-tuning": {"init_from": pre_dir, "init_skip": ("head",),
                         "finetune": {"mode": "full"}},
}
results = {}
for way, overrides in WAYS.items():
  config = lenet_config(dataset="uci_digits", batch_size=10, num_steps=150, eval_every_epochs=0.0,
                        log_every_steps=50, checkpoint_every_steps=150, seed=0, **overrides)
  config.data.train_per_class = 2
  config.optimizer.learning_rate = 1e-3 if way == "full fine-tuning" else 3e-3
  workdir = os.path.join(OUT, "08_" + way.replace(" ", "_"))
  results[way] = (loop.train(config, workdir, quiet=True), workdir)

print(f"{'':22s} top-1 on the 500 UCI test digits (20 labelled training digits)")
for way, (final, _) in results.items():
  print(f"{way:22s} {final['eval/top1']:.3f}")
best = max(results, key=lambda w: results[w][0]["eval/top1"])
gain = results[best][0]["eval/top1"] - results["from scratch"][0]["eval/top1"]
print(f"\nbest: {best}, {gain:+.3f} over training from scratch")

# %% [markdown]
# With 20 labelled images, the pretrained features carry most of the work; how much of the
# network to retrain is the trade-off between adapting to the new images and overfitting to the
# few labels. (One seed: `experiments/transfer_demo.py` runs the same comparison over several
# seeds.)
#
# ## 4. What the layers remember
#
# The relative change of each layer's weights under full fine-tuning, ‖after − before‖ / ‖before‖.
# The new head (`fc3`) starts fresh, so it is left out.

# %%
before = loading.load(pre_dir).variables["params"]
after = loading.load(results["full fine-tuning"][1]).variables["params"]
moved = {}
for layer in before:
  if layer == "fc3":
    continue
  b = np.concatenate([np.ravel(a) for a in jax.tree.leaves(before[layer])])
  a = np.concatenate([np.ravel(a) for a in jax.tree.leaves(after[layer])])
  moved[layer] = np.linalg.norm(a - b) / np.linalg.norm(b)
  print(f"{layer:6s} moved {moved[layer]:7.2%}")
print(f"largest change: {max(moved.values()):.0%} ({max(moved, key=moved.get)}); "
      f"smallest: {min(moved.values()):.0%} ({min(moved, key=moved.get)})")

# %% [markdown]
# Fine-tuning nudges the pretrained weights rather than replacing them: what the layers learnt
# on MNIST (strokes, edges, their combinations) is kept and adjusted, which is why 20 labels
# are enough to beat training from scratch.
