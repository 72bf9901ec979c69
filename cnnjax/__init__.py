"""cnnjax: the course's CNNs in JAX/Flax. ``load_pretrained`` opens converted torchvision
weights."""

from cnnjax.transfer.pretrained import load_pretrained

__all__ = ["load_pretrained"]
