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
# # 4. Функции активации — Activation functions
#
# The course: ReLU outputs zero for x < 0, so a unit whose input stays negative stops learning
# ("dies"). Leaky ReLU (LReLU) keeps a small slope there, f(x) = αx for x < 0 with α ≈ 0.01, and
# "some researchers report success with it, but the results are not always stable" (*результаты
# не всегда стабильны*).
#
# **What you will see** (computed here):
# 1. ReLU, leaky ReLU, ELU and GELU as the models use them (`cnnjax.models.layers.activation`),
#    and their gradients: where ReLU's is exactly zero;
# 2. the claim about leaky ReLU measured: LeNet-5 trained with ReLU and with leaky ReLU on the
#    same seeds (each seed fixes the initialisation and the batches, so seed s of both variants
#    sees the same data), and the sweep's statistics (`cnnjax.sweep.stats`) on the final
#    metrics: mean, spread across seeds, a 95% interval, Welch's and the paired t-test.
#
# The sweep is small (3 seeds × 2 activations × 60 steps) so that the notebook runs in about a
# minute; raise `SEEDS` and `STEPS` for a sharper answer.

# %%
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from cnnjax import cli, config as config_lib
from cnnjax.inspect import course
from cnnjax.models import layers
from cnnjax.sweep import stats
from cnnjax.train import loop

OUT = os.environ.get("CNNJAX_COURSE_DIR") or tempfile.mkdtemp(prefix="cnnjax_course_")

# %% [markdown]
# ## The four functions and their slopes

# %%
x = jnp.linspace(-4, 3, 701)
names = ("relu", "leaky_relu", "elu", "gelu")
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for name in names:
  f = layers.activation(name)
  axes[0].plot(x, f(x), label=name)
  axes[1].plot(x, jax.vmap(jax.grad(f))(x), label=name)
axes[0].set_title("f(x)")
axes[1].set_title("f'(x): ReLU's is 0 for every x < 0")
for ax in axes:
  ax.axhline(0, color="k", lw=0.5)
  ax.axvline(0, color="k", lw=0.5)
  ax.legend()
  ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

relu, leaky = course.relu_vs_leaky((-3.0, -1.0, 0.0, 2.0))
print("x          = [-3, -1, 0, 2]")
print("relu       =", relu.tolist())
print("leaky_relu =", [round(v, 4) for v in leaky.tolist()])
for name in names:
  slope = float(jax.grad(layers.activation(name))(-2.0))
  print(f"slope of {name:10s} at x = -2: {slope:.4f}")

# %% [markdown]
# ## Is leaky ReLU less stable? A seeded sweep
#
# LeNet-5 (modern form) on the embedded MNIST, trained from Python with
# `cnnjax.train.loop.train(config, workdir)`: one config from `cnnjax.config.defaults()`, two
# values of `model_options.activation`, the same seeds. JAX's persistent compilation cache
# (`cnnjax.cli.compilation_cache`, kept under this notebook's directory unless `CNNJAX_CACHE`
# says otherwise) lets the runs after the first of each variant skip compiling.

# %%
SEEDS, STEPS = 3, 60
VARIANTS = ("relu", "leaky_relu")
os.environ.setdefault("CNNJAX_CACHE", os.path.join(OUT, "jax_cache"))
cli.compilation_cache()


def last_train_loss(workdir: str) -> float:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [row for row in map(json.loads, f) if "train/loss" in row][-1]["train/loss"]


def run(activation: str, seed: int) -> dict:
  config = config_lib.defaults()
  config.model, config.dataset, config.seed = "lenet5", "mnist5k", seed
  config.model_options.activation = activation
  config.batch_size, config.num_steps = 64, STEPS
  config.eval_every_epochs, config.log_every_steps = 0.0, 20
  workdir = os.path.join(OUT, "04_sweep", f"{activation}_seed{seed}")
  final = loop.train(config, workdir)
  return {**final, "train/loss": last_train_loss(workdir)}


results = {v: {seed: run(v, seed) for seed in range(SEEDS)} for v in VARIANTS}

# %% [markdown]
# ## The statistics

# %%
metrics = ("eval/top1", "eval/loss", "train/loss")
print(f"{'variant':11s} {'metric':10s} {'n':>2s} {'mean':>7s} {'std':>7s} {'95% CI':>17s}  per seed")
summaries = {}
for v in VARIANTS:
  for m in metrics:
    values = [results[v][s][m] for s in range(SEEDS)]
    s = summaries[v, m] = stats.summarize_values(values)
    print(f"{v:11s} {m:10s} {s.n:2d} {s.mean:7.4f} {s.std:7.4f} [{s.ci_low:7.4f}, {s.ci_high:7.4f}]"
          f"  {', '.join(f'{x:.4f}' for x in values)}")

pvalues = []
for m in metrics:
  a = {s: results["relu"][s][m] for s in range(SEEDS)}
  b = {s: results["leaky_relu"][s][m] for s in range(SEEDS)}
  p_paired, n = stats.paired(b, a)
  pvalues.append(p_paired)
  print(f"{m}: leaky - relu = {np.mean([b[s] - a[s] for s in a]):+.4f} on average; "
        f"Welch p = {stats.welch(list(b.values()), list(a.values())):.3f}, "
        f"paired p = {p_paired:.3f} over {n} seeds")
holm = stats.holm(pvalues)
print("Holm-adjusted paired p-values:", ", ".join(f"{m} {p:.3f}" for m, p in zip(metrics, holm)))

# %% [markdown]
# ## What the runs say
#
# "Stable" is read two ways: the spread of the final accuracy across seeds (a less stable
# activation would give a wider spread), and the difference in the mean (paired by seed). The
# sentence below is written from the numbers above, not in advance.

# %%
spread = {v: summaries[v, "eval/top1"].std for v in VARIANTS}
wider = max(VARIANTS, key=spread.get)
significant = [m for m, p in zip(metrics, holm) if p < 0.05]
print(f"Across {SEEDS} seeds of {STEPS} steps, top-1 varies by {spread['relu']:.4f} (std) with ReLU "
      f"and {spread['leaky_relu']:.4f} with leaky ReLU: {wider} is the less steady here "
      f"(by {abs(spread['relu'] - spread['leaky_relu']):.4f}).")
print("A difference in the means that survives Holm's correction at 5%: "
      + (", ".join(significant) if significant else "none") + ".")
print(f"With n = {SEEDS} the 95% intervals are wide (top-1 with leaky ReLU: "
      f"[{summaries['leaky_relu', 'eval/top1'].ci_low:.3f}, "
      f"{summaries['leaky_relu', 'eval/top1'].ci_high:.3f}]): this small a sweep can show an "
      "instability only if it is large. The course's claim is about deep networks trained long; "
      "rerun with more seeds and steps (or a larger learning rate) to probe it further.")
