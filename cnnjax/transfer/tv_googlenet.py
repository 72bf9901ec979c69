"""torchvision GoogLeNet weights → ``googlenet`` variables.

torchvision's module paths map by ``torch_layout.dotted`` (``inception3a.branch2.0.conv`` →
``inception3a/branch2_0/conv``); only the auxiliary heads' fc1, which reads a flattened 128×4×4
map, needs its rows reordered from (C, H, W) to our (H, W, C).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.transfer import torch_layout
from cnnjax.data.preprocessing import Preprocessing, Weights

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

# GoogLeNet_Weights.IMAGENET1K_V1 is ImageClassification(crop_size=224) with ``transform_input``
# on (weights ported from Caffe/TF, expecting (x − 0.5) / 0.5): ``Preprocessing`` folds it into
# the normalisation, since our model has no such switch. The file also holds the aux heads,
# untrained.
WEIGHTS: dict[str, tuple[Weights, ...]] = {
    "googlenet": (Weights("IMAGENET1K_V1", "googlenet-1378be20.pth",
                          Preprocessing(transform_input=True), 69.778),),
}
PREPROCESSING: dict[str, Preprocessing] = {k: v[0].preprocessing for k, v in WEIGHTS.items()}
