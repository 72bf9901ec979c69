"""torchvision ResNet state dicts → ``resnet18 ... resnet152`` variables (models/resnet.py).

Our module names are torchvision's with numeric parts joined by ``_`` (``layer1.0.downsample.0``
→ ``layer1_0/downsample_0``), so the generic ``torch_layout.dotted`` rename is the whole mapping.

torchvision's ResNets are v1.5 (stride in the bottleneck's 3×3 conv), the layout of all their
weights: load them into the default ``original=False`` models; with ``original=True`` the
shapes fit but the numbers are wrong. The CIFAR ResNets (resnet20 ... resnet110) have no
torchvision counterpart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.transfer import torch_layout
from cnnjax.data.preprocessing import IMAGENET1K, Preprocessing, Weights

TORCHVISION: dict[str, str] = {
    name: name for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")}

# IMAGENET1K_V2 (torchvision's DEFAULT where it exists) was trained with a newer recipe and is
# evaluated with ImageClassification(crop_size=224, resize_size=232); V1 with resize 256.
_V2 = Preprocessing(resize=232)

# Every torchvision weights of each model, the default first.
WEIGHTS: dict[str, tuple[Weights, ...]] = {
    "resnet18": (Weights("IMAGENET1K_V1", "resnet18-f37072fd.pth", IMAGENET1K, 69.758),),
    "resnet34": (Weights("IMAGENET1K_V1", "resnet34-b627a593.pth", IMAGENET1K, 73.314),),
    "resnet50": (Weights("IMAGENET1K_V2", "resnet50-11ad3fa6.pth", _V2, 80.858),
                 Weights("IMAGENET1K_V1", "resnet50-0676ba61.pth", IMAGENET1K, 76.130)),
    "resnet101": (Weights("IMAGENET1K_V2", "resnet101-cd907fc2.pth", _V2, 81.886),
                  Weights("IMAGENET1K_V1", "resnet101-63fe2227.pth", IMAGENET1K, 77.374)),
    "resnet152": (Weights("IMAGENET1K_V2", "resnet152-f82ba261.pth", _V2, 82.284),
                  Weights("IMAGENET1K_V1", "resnet152-394f9c45.pth", IMAGENET1K, 78.312)),
}
PREPROCESSING: dict[str, Preprocessing] = {k: v[0].preprocessing for k, v in WEIGHTS.items()}


def convert(state_dict: Mapping[str, Any]) -> dict[str, dict]:
  """A torchvision ResNet (or block) ``state_dict`` → ``{'params': ..., 'batch_stats': ...}``."""
  return torch_layout.to_flax(state_dict, torch_layout.dotted)


CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict]] = {
    name: convert for name in TORCHVISION}
