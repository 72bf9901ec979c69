"""cnnjax: the course's CNNs in JAX/Flax. ``load_pretrained`` opens converted torchvision
weights.

Imports are lazy, so ``cnnjax.models`` and ``cnnjax.train.step`` need only jax, flax and optax
(the benchmark harness runs on machines with nothing else).
"""

__all__ = ["load_pretrained"]


def __getattr__(name: str):
  if name == "load_pretrained":
    from cnnjax.transfer.pretrained import load_pretrained
    return load_pretrained
  raise AttributeError(f"module 'cnnjax' has no attribute {name!r}")
