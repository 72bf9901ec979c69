"""What the registry knows about a model besides its module: inputs, classes, paper."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flax import linen as nn

from cnnjax.errors import UserError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One registered model name.

  Attributes:
    name: the registry name, as the papers write it (``vgg16_bn``, ``resnet56``).
    module: the ``flax.linen`` class.
    fixed: module fields this name pins (a depth table, a variant switch); not user options.
    input_size: the natural square input size (224 for ImageNet models).
    min_input_size: the smallest square input the architecture accepts.
    channels: input channels of the natural input.
    num_classes: default number of classes.
    aux_loss_weight: train-time weight of each auxiliary head's loss (papers' value).
    paper: citation of the paper and the table or figure the module follows.
  """

  name: str
  module: type[nn.Module]
  fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  input_size: int = 224
  min_input_size: int = 32
  channels: int = 3
  num_classes: int = 1000
  aux_loss_weight: float = 0.0
  paper: str = ""

  def input_size_for(self, native: int | None = None, requested: int | None = None) -> int:
    """The square input size a run gives this model: ``requested`` (``config.data.image_size``)
    if set; else the model's own size where it has one fixed size (LeNet-5); else the data's
    ``native`` size (the model's natural ``input_size`` when unknown), raised to the model's
    minimum. A requested size below the minimum is a ``UserError``."""
    if requested is not None:
      if requested < self.min_input_size:
        raise UserError(f"config.data.image_size={requested} is below {self.name}'s minimum "
                        f"input size {self.min_input_size}.")
      return requested
    if self.min_input_size == self.input_size or native is None:
      return self.input_size
    return max(native, self.min_input_size)
