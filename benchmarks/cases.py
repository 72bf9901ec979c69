"""What a benchmark measures: a model at a batch size, input size and dtype."""

from __future__ import annotations

import dataclasses

# The side-by-side set: (batch, input size, channels, classes) chosen for a 2-core CPU.
DEFAULTS = {
    "lenet5": (256, 28, 1, 10),
    "resnet20": (128, 32, 3, 10),
    "resnet18@32": (64, 32, 3, 10),
    "resnet50@224": (16, 224, 3, 1000),
}
DTYPES = ("float32", "bfloat16")


class CaseError(ValueError):
  """A benchmark case that can't be run as asked."""


@dataclasses.dataclass(frozen=True)
class Case:
  model: str
  batch: int
  size: int
  channels: int
  num_classes: int
  dtype: str = "float32"

  @property
  def label(self) -> str:
    return f"{self.model}@{self.size}"


def parse(text: str, *, batch: int | None = None, dtype: str = "float32") -> Case:
  """``'resnet18@32'`` (model@input size) or a name from ``DEFAULTS`` → a Case.

  Unlisted models take 3 channels, 1000 classes and their registered input size unless given.
  """
  if dtype not in DTYPES:
    raise CaseError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
  model, _, size_text = text.partition("@")
  if text in DEFAULTS:
    b, size, channels, classes = DEFAULTS[text]
  else:
    b, size, channels, classes = 32, None, 3, 1000
    for key, value in DEFAULTS.items():
      if key.split("@")[0] == model:
        b, size, channels, classes = value
  if size_text:
    if not size_text.isdigit() or int(size_text) < 1:
      raise CaseError(f"bad input size in {text!r}; write MODEL@SIZE, e.g. resnet18@32.")
    size = int(size_text)
  if batch is not None:
    if batch < 1:
      raise CaseError(f"batch must be positive, got {batch}.")
    b = batch
  if size is None:
    from cnnjax.models import registry  # pylint: disable=import-outside-toplevel
    spec = registry.get_spec(model)
    size, channels, classes = spec.input_size, spec.channels, spec.num_classes
  return Case(model, b, size, channels, classes, dtype)
