"""torchvision VGG state dicts → our ``vgg*`` variables (``cnnjax/models/vgg.py``).

torchvision numbers the layers of ``features`` in order (conv, [BatchNorm,] ReLU per conv, a max
pool per stage) and of ``classifier`` (fc, ReLU, dropout, fc, ReLU, dropout, fc); ``_names``
replays that numbering over the model's depth table to get the paper's names (``conv3_2``,
``bn3_2``, ``fc6``). fc6 reads the flattened 512×7×7 map, so its rows are permuted from
(C, H, W) to our (H, W, C) order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.models.vgg import DEPTHS
from cnnjax.transfer import torch_layout
from cnnjax.data.preprocessing import IMAGENET1K, Preprocessing, Weights

_FILES = {"vgg11": "vgg11-8a719046.pth", "vgg11_bn": "vgg11_bn-6002323d.pth",
          "vgg13": "vgg13-19584684.pth", "vgg13_bn": "vgg13_bn-abd245e5.pth",
          "vgg16": "vgg16-397923af.pth", "vgg16_bn": "vgg16_bn-6c64b313.pth",
          "vgg19": "vgg19-dcbb9e9d.pth", "vgg19_bn": "vgg19_bn-c79401a0.pth"}
_TOP1 = {"vgg11": 69.02, "vgg11_bn": 70.37, "vgg13": 69.928, "vgg13_bn": 71.586,
         "vgg16": 71.592, "vgg16_bn": 73.36, "vgg19": 72.376, "vgg19_bn": 74.218}

TORCHVISION: dict[str, str] = {name: name for name in _FILES}

# Every torchvision weights of each model, the default first. (vgg16's IMAGENET1K_FEATURES
# has no classifier and is left out.)
WEIGHTS: dict[str, tuple[Weights, ...]] = {
    name: (Weights("IMAGENET1K_V1", file, IMAGENET1K, _TOP1[name]),)
    for name, file in _FILES.items()
}
PREPROCESSING: dict[str, Preprocessing] = {k: v[0].preprocessing for k, v in WEIGHTS.items()}


def _names(depths: tuple[int, ...], batch_norm: bool) -> dict[str, str]:
  """torchvision module path → our module name, for one configuration."""
  names, index = {}, 0
  for s, depth in enumerate(depths, start=1):
    for i in range(1, depth + 1):
      names[f"features.{index}"] = f"conv{s}_{i}"
      if batch_norm:
        names[f"features.{index + 1}"] = f"bn{s}_{i}"
      index += 3 if batch_norm else 2  # conv, [bn,] relu
    index += 1  # max pool
  names.update({"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"})
  return names


def _rename(names: Mapping[str, str], module: str) -> torch_layout.FlaxPath:
  if module not in names:
    raise ValueError(f"unexpected torchvision VGG module {module!r}; "
                     f"expected one of {', '.join(names)}")
  return (names[module],)


def convert(name: str, state_dict: Mapping[str, Any]) -> dict[str, dict]:
  """torchvision ``name`` state dict → ``{'params': ..., ['batch_stats': ...]}``."""
  base, bn = name.removesuffix("_bn"), name.endswith("_bn")
  rename = functools.partial(_rename, _names(DEPTHS[base], bn))
  return torch_layout.to_flax(state_dict, rename, flatten={"classifier.0": (512, 7, 7)})


CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict]] = {
    name: functools.partial(convert, name) for name in TORCHVISION
}
