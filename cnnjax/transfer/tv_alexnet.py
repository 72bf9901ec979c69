"""torchvision AlexNet state dict → our ``alexnet`` variables (``cnnjax/models/alexnet.py``).

torchvision's ``features.N`` / ``classifier.N`` indices become the paper's layer names; fc6 reads
the flattened 256×6×6 map, so its rows are permuted from (C, H, W) to our (H, W, C) order. The
2012 two-tower form (``original=True``) and ZFNet have no torchvision weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.transfer import torch_layout
from cnnjax.data.preprocessing import IMAGENET1K, Preprocessing, Weights

# torchvision module path → our module name.
_NAMES = {
    "features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
    "features.10": "conv5", "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8",
}

TORCHVISION: dict[str, str] = {"alexnet": "alexnet"}

# Every torchvision weights of each model, the default first.
WEIGHTS: dict[str, tuple[Weights, ...]] = {
    "alexnet": (Weights("IMAGENET1K_V1", "alexnet-owt-7be5be79.pth", IMAGENET1K, 56.522),),
}
PREPROCESSING: dict[str, Preprocessing] = {k: v[0].preprocessing for k, v in WEIGHTS.items()}


def _rename(module: str) -> torch_layout.FlaxPath:
  if module not in _NAMES:
    raise ValueError(f"unexpected torchvision AlexNet module {module!r}; "
                     f"expected one of {', '.join(_NAMES)}")
  return (_NAMES[module],)


def convert_alexnet(state_dict: Mapping[str, Any]) -> dict[str, dict]:
  """torchvision ``alexnet`` state dict → ``{'params': ...}`` for ``create('alexnet')``."""
  return torch_layout.to_flax(state_dict, _rename, flatten={"classifier.1": (256, 6, 6)})


CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict]] = {"alexnet": convert_alexnet}
