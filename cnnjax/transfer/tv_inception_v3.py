"""torchvision Inception v3 weights → ``inception_v3`` variables.

torchvision's module paths (``Mixed_6e.branch7x7dbl_3.conv``, ``AuxLogits.conv1.bn``) are our
flax paths, joined with '/'; every dense layer follows a global average pool, so no rows need
reordering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.transfer import torch_layout


def inception_v3(state_dict: Mapping[str, Any], *, aux_logits: bool = True) -> dict:
  """Converts ``torchvision.models.inception_v3(...).state_dict()``.

  ``aux_logits=True`` (our default model, like torchvision's) keeps the ``AuxLogits`` head;
  False drops it for ``create('inception_v3', aux_logits=False)``.
  """
  def rename(module: str):
    if not aux_logits and module.startswith("AuxLogits."):
      return None
    return torch_layout.dotted(module)

  return torch_layout.to_flax(state_dict, rename)


CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict]] = {"inception_v3": inception_v3}

TORCHVISION: dict[str, str] = {"inception_v3": "inception_v3"}

# torchvision's Inception_V3_Weights.IMAGENET1K_V1 (ImageClassification(crop_size=299,
# resize_size=342)). The builder turns on ``transform_input`` for these weights (ported from
# TF, which expects (x − 0.5) / 0.5): our model has no such switch; normalising with
# ``effective_mean`` / ``effective_std`` instead of ``mean`` / ``std`` is the same thing.
PREPROCESSING: dict[str, dict] = {
    "inception_v3": {
        "weights": "IMAGENET1K_V1",
        "input_size": 299,
        "resize_size": 342,
        "crop_size": 299,
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "transform_input": True,
        "effective_mean": (0.5, 0.5, 0.5),
        "effective_std": (0.5, 0.5, 0.5),
    },
}
