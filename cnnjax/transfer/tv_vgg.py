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

_IMAGENET = dict(weights="IMAGENET1K_V1", input_size=224, resize_size=256, crop_size=224,
                 interpolation="bilinear", mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), transform_input=False)

# torchvision's reported IMAGENET1K_V1 top-1 accuracy.
_TOP1 = {"vgg11": 69.02, "vgg11_bn": 70.37, "vgg13": 69.928, "vgg13_bn": 71.586,
         "vgg16": 71.592, "vgg16_bn": 73.36, "vgg19": 72.376, "vgg19_bn": 74.218}

TORCHVISION: dict[str, str] = {name: name for name in _TOP1}

# torchvision's IMAGENET1K_V1 eval transform per model.
PREPROCESSING: dict[str, dict] = {name: dict(_IMAGENET, top1=top1) for name, top1 in _TOP1.items()}


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
