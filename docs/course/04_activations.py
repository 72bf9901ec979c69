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
#    sees the same data), run as a sweep (`cnnjax.sweep.api.run`), and the sweep's statistics
#    (`cnnjax.sweep.stats`) on the final metrics: mean, spread across seeds, a 95% interval,
#    Welch's and the paired t-test.
#
# The sweep is small (3 seeds × 2 activations × 60 steps) so that the notebook runs in about a
# minute; raise `SEEDS` and `STEPS` for a sharper answer.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from cnnjax import config as config_lib
from cnnjax.inspect import course
from cnnjax.models import layers
from cnnjax.sweep import Sweep, api, stats

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
# LeNet-5 (modern form) on the embedded MNIST: one config from `cnnjax.config.defaults()`, and
# a `Sweep` over `model_options.activation` with the same seeds, run from Python by
# `cnnjax.sweep.api.run` — what `launch.py --sweep` does from a shell: every run is checked
# before any starts, runs as its own `launch.py` child (2 at a time here), writes its own
# workdir, and a run already done is not run again (run the cell twice: the second time it
# only reads the results). The runs share JAX's persistent compilation cache
# (`cnnjax.compilation`), so the later seeds of each variant load their programs instead of
# compiling them.

# %%
SEEDS, STEPS = 3, 60
config = config_lib.defaults()
config.model, config.dataset = "lenet5", "mnist5k"
config.batch_size, config.num_steps = 64, STEPS
config.eval_every_epochs, config.log_every_steps = 0.0, 20
sweep = Sweep({"model_options.activation": ["relu", "leaky_relu"]}, seeds=range(SEEDS))
results = api.run(config, os.path.join(OUT, "04_sweep"), sweep=sweep, workers=2, quiet=True)
assert not results.failed, [(row.workdir, row.error) for row in results.failed]
for row in results.rows:
  print(f"{row.variant:22s} seed {row.seed}: {row.status}, test top-1 "
        f"{row.finals['eval/top1']:.4f}, last train loss {row.finals['train/loss']:.4f}, "
        f"{row.wall_s:.0f} s")

# %% [markdown]
# ## The statistics
#
# The sweep's own summary (`results.summary`, the rows of its `summary.md`): per variant the
# mean, the spread across seeds (sample std), the 95% t interval, and against the baseline
# (ReLU) Welch's and the paired t-test (paired by seed: seed s of both variants saw the same
# batches). Then the same tests on each final metric from `cnnjax.sweep.stats`, with Holm's
# correction over the three metrics.

# %%
display(Markdown(results.markdown()))

relu, leaky = (f"activation={v}" for v in ("relu", "leaky_relu"))
metrics = ("eval/top1", "eval/loss", "train/loss")
pvalues = []
for m in metrics:
  values = results.values(m)
  a, b = values[relu], values[leaky]
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
summary = {row["variant"]: row for row in results.summary}
spread = {v: summary[v]["eval/top1_std"] for v in (relu, leaky)}
wider = max(spread, key=spread.get)
significant = [m for m, p in zip(metrics, holm) if p < 0.05]
print(f"Across {SEEDS} seeds of {STEPS} steps, top-1 varies by {spread[relu]:.4f} (std) with ReLU "
      f"and {spread[leaky]:.4f} with leaky ReLU: {wider.split('=')[1]} is the less steady here "
      f"(by {abs(spread[relu] - spread[leaky]):.4f}).")
print("A difference in the means that survives Holm's correction at 5%: "
      + (", ".join(significant) if significant else "none") + ".")
print(f"With n = {SEEDS} the 95% intervals are wide (top-1 with leaky ReLU: "
      f"[{summary[leaky]['eval/top1_ci_low']:.3f}, {summary[leaky]['eval/top1_ci_high']:.3f}]): "
      "this small a sweep can show an instability only if it is large. The course's claim is "
      "about deep networks trained long; rerun with more seeds and steps (or a larger learning "
      "rate) to probe it further.")
