"""torchvision ResNet weights → ``cnnjax.models.resnet.ResNet`` variables.

Our module names are torchvision's with numeric parts joined by ``_`` (``layer1.0.downsample.0``
→ ``layer1_0/downsample_0``), so the generic ``torch_layout.dotted`` rename is the whole mapping.

torchvision's weights are ResNet v1.5 (stride in the bottleneck's 3×3 conv): load them into the
default ``original=False`` models only. The CIFAR ResNets (resnet20 ... resnet110) have no
torchvision counterpart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.transfer import torch_layout

# Our registry name -> torchvision builder name.
TORCHVISION: dict[str, str] = {
    name: name for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")}

# torchvision's IMAGENET1K_V1 transforms: ImageClassification(crop_size=224), i.e. resize the
# short side to 256 (bilinear, antialiased), centre-crop 224, scale to [0, 1], then normalise.
_IMAGENET1K_V1 = {
    "weights": "IMAGENET1K_V1",
    "input_size": 224,
    "resize_size": 256,
    "crop_size": 224,
    "interpolation": "bilinear",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "transform_input": False,
}
PREPROCESSING: dict[str, dict] = {name: dict(_IMAGENET1K_V1) for name in TORCHVISION}


def convert(state_dict: Mapping[str, Any]) -> dict[str, dict]:
  """A torchvision ResNet ``state_dict`` → ``{'params': ..., 'batch_stats': ...}``."""
  return torch_layout.to_flax(state_dict, torch_layout.dotted)


CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict]] = {
    name: convert for name in TORCHVISION}
