"""torchvision Inception v3 weights → ``inception_v3`` variables.

torchvision's module paths (``Mixed_6e.branch7x7dbl_3.conv``, ``AuxLogits.conv1.bn``) are our
flax paths, joined with '/'; every dense layer follows a global average pool, so no rows need
reordering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnjax.transfer import torch_layout
from cnnjax.data.preprocessing import Preprocessing, Weights


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

# Inception_V3_Weights.IMAGENET1K_V1 is ImageClassification(crop_size=299, resize_size=342) with
# ``transform_input`` on (weights ported from TF, expecting (x − 0.5) / 0.5): ``Preprocessing``
# folds it into the normalisation, since our model has no such switch.
WEIGHTS: dict[str, tuple[Weights, ...]] = {
    "inception_v3": (Weights("IMAGENET1K_V1", "inception_v3_google-0cc3c7bd.pth",
                             Preprocessing(resize=342, crop=299, transform_input=True), 77.294),),
}
PREPROCESSING: dict[str, Preprocessing] = {k: v[0].preprocessing for k, v in WEIGHTS.items()}
