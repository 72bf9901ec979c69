"""What each JAX platform runs fast when the config leaves the choice open.

Pure functions of the platform name (``jax.devices()[0].platform``: ``cpu``, ``gpu``, ``tpu``),
so they are tested without an accelerator; ``cnnjax.train.resolve`` fills the config's open keys
with them and the benchmarks measure with them.

- Compute dtype: bfloat16 on GPUs and TPUs, whose matrix units run it at twice float32's (TF32's)
  rate or more; float32 on CPU, where XLA and the oneDNN backend run float32 best. Parameters and
  optimizer state stay float32 either way (``dtype`` is the models' compute precision).
- Steps per call: a model on small images (MNIST, CIFAR: up to ``SMALL_INPUT`` pixels) takes a
  millisecond or two per step on an accelerator, about what the host spends per call (the
  stream's batch, its transfer, the dispatch), so there several steps go into one call; on CPU
  the experiment file chooses (``experiments/lenet_mnist.py`` sets 8), else 1.
"""

from __future__ import annotations

ACCELERATORS = ("gpu", "tpu")
SMALL_INPUT = 64  # pixels per side: images up to this size make a short step on an accelerator
ACCELERATOR_STEPS_PER_CALL = 8


def compute_dtype(platform: str, dtype: str | None = None) -> str:
  """``dtype`` when given, else bfloat16 on an accelerator and float32 on CPU."""
  if dtype is not None:
    return dtype
  return "bfloat16" if platform in ACCELERATORS else "float32"


def steps_per_call(platform: str, input_size: int, steps: int | None = None) -> int:
  """``steps`` when given, else ``ACCELERATOR_STEPS_PER_CALL`` for small images on an
  accelerator and 1 otherwise."""
  if steps is not None:
    return steps
  return ACCELERATOR_STEPS_PER_CALL if platform in ACCELERATORS and input_size <= SMALL_INPUT else 1
