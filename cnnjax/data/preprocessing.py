"""What pretrained weights expect of their input: one schema for every imported model.

torchvision's classification weights all use ``ImageClassification``: resize the shorter side to
``resize`` (antialiased), centre-crop ``crop``, scale to [0, 1], normalise with ``mean`` / ``std``.
GoogLeNet and Inception v3 weights (ported from Caffe/TF) also set ``transform_input``: the model
re-maps its normalised input to the ``(x - 0.5) / 0.5`` convention before the first conv. Our
models have no such switch; ``effective_mean`` / ``effective_std`` fold it into the normalisation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from PIL import Image

from cnnjax.data import images as images_lib
from cnnjax.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The constants torchvision's ``_transform_input`` hard-codes (GoogLeNet, Inception v3).
_TV_MEAN, _TV_STD = IMAGENET_MEAN, IMAGENET_STD


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """An eval transform: resize the shorter side, centre-crop, /255, normalise.

  ``preprocessing(images)`` applies it to PIL images or a uint8 NHWC batch and returns the float32
  NHWC model input, equal to torchvision's transform on the same PIL images (then
  ``transform_input``, if set).
  """

  resize: int = 256
  crop: int = 224
  mean: tuple[float, ...] = IMAGENET_MEAN
  std: tuple[float, ...] = IMAGENET_STD
  interpolation: str = "bilinear"
  transform_input: bool = False

  def __post_init__(self):
    images_lib.check_interpolation(self.interpolation)
    if not 0 < self.crop <= self.resize:
      raise UserError(f"preprocessing needs 0 < crop <= resize, got crop={self.crop}, "
                      f"resize={self.resize}.")
    if len(self.mean) != len(self.std) or min(self.std) <= 0:
      raise UserError(f"bad normalisation mean={self.mean} std={self.std}.")

  @property
  def input_size(self) -> int:
    """The square input size the model sees."""
    return self.crop

  @property
  def effective_std(self) -> tuple[float, ...]:
    if not self.transform_input:
      return tuple(self.std)
    return tuple(0.5 * s / t for s, t in zip(self.std, _TV_STD))

  @property
  def effective_mean(self) -> tuple[float, ...]:
    # transform_input computes ((p - m) / s) * (T / 0.5) + (M - 0.5) / 0.5; as one (p - m') / s'.
    if not self.transform_input:
      return tuple(self.mean)
    return tuple(m - s * (t - 0.5) / u
                 for m, s, t, u in zip(self.mean, self.std, _TV_MEAN, _TV_STD))

  def to_json(self) -> dict[str, Any]:
    """The fields plus the derived ``input_size`` and effective normalisation (for people)."""
    return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std),
            "input_size": self.input_size, "effective_mean": list(self.effective_mean),
            "effective_std": list(self.effective_std)}

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> "Preprocessing":
    """Inverse of ``to_json``; derived keys are ignored."""
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
    return cls(**kwargs)

  def crop_images(self, images: np.ndarray | Iterable[Image.Image]) -> np.ndarray:
    """Resize + centre crop only: uint8 (N, crop, crop, 3)."""
    if isinstance(images, Image.Image):
      raise UserError("pass a list of PIL images (or a uint8 NHWC batch), not a single image.")
    if isinstance(images, np.ndarray) and images.ndim != 4:
      raise UserError(f"expected a uint8 NHWC batch, got an array of shape {images.shape}.")
    out = []
    for image in images:
      if not isinstance(image, Image.Image):
        image = images_lib.from_array(image)
      image = image.convert("RGB") if image.mode != "RGB" else image
      out.append(images_lib.to_array(images_lib.resize_crop(
          image, resize=self.resize, crop=self.crop, interpolation=self.interpolation)))
    return np.stack(out)

  def normalise(self, images: np.ndarray) -> np.ndarray:
    """uint8 NHWC → float32 NHWC, with ``transform_input`` folded in."""
    mean = np.asarray(self.effective_mean, np.float32)
    std = np.asarray(self.effective_std, np.float32)
    return (np.asarray(images, np.float32) / np.float32(255.0) - mean) / std

  def __call__(self, images: np.ndarray | Iterable[Image.Image]) -> np.ndarray:
    """PIL images or a uint8 NHWC batch → float32 model input (N, crop, crop, 3)."""
    return self.normalise(self.crop_images(images))


@dataclasses.dataclass(frozen=True)
class Weights:
  """One set of torchvision weights for a model.

  Attributes:
    tag: torchvision's weights enum member (``IMAGENET1K_V1``).
    file: the file torchvision downloads (into ``~/.cache/torch/hub/checkpoints``).
    preprocessing: the eval transform the weights were evaluated with.
    top1: torchvision's reported ImageNet top-1 accuracy with that transform.
  """

  tag: str
  file: str
  preprocessing: Preprocessing
  top1: float


IMAGENET1K = Preprocessing()  # ImageClassification(crop_size=224): torchvision's usual transform
