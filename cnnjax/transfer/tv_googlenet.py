"""torchvision GoogLeNet weights → ``googlenet`` variables.

torchvision's module paths map by ``torch_layout.dotted`` (``inception3a.branch2.0.conv`` →
``inception3a/branch2_0/conv``); only the auxiliary heads' fc1, which reads a flattened 128×4×4
map, needs its rows reordered from (C, H, W) to our (H, W, C).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.transfer import torch_layout

# The aux heads' fc1 reads adaptive_avg_pool(4×4) of a 128-channel conv, flattened.
_FLATTEN = {"aux1.fc1": (128, 4, 4), "aux2.fc1": (128, 4, 4)}


def googlenet(state_dict: Mapping[str, Any], *, aux_logits: bool = False) -> dict:
  """Converts ``torchvision.models.googlenet(...).state_dict()``.

  ``aux_logits=False`` (our default model) drops the aux heads' tensors if the state dict has
  them (torchvision's ImageNet weights ship untrained ones); True keeps them for
  ``create('googlenet', aux_logits=True)``.
  """
  def rename(module: str):
    if not aux_logits and module.startswith(("aux1.", "aux2.")):
      return None
    return torch_layout.dotted(module)

  return torch_layout.to_flax(state_dict, rename, flatten=_FLATTEN)


CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict]] = {"googlenet": googlenet}

TORCHVISION: dict[str, str] = {"googlenet": "googlenet"}

# torchvision's GoogLeNet_Weights.IMAGENET1K_V1 (ImageClassification(crop_size=224)). The
# builder turns on ``transform_input`` for these weights: after ImageNet normalisation it maps
# the input to the (x − 0.5) / 0.5 convention of the ported (Caffe/TF) weights. Our model has no
# such switch; apply it in preprocessing — it is the same as normalising with
# ``effective_mean`` / ``effective_std`` instead of ``mean`` / ``std``.
PREPROCESSING: dict[str, dict] = {
    "googlenet": {
        "weights": "IMAGENET1K_V1",
        "input_size": 224,
        "resize_size": 256,
        "crop_size": 224,
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "transform_input": True,
        "effective_mean": (0.5, 0.5, 0.5),
        "effective_std": (0.5, 0.5, 0.5),
    },
}
