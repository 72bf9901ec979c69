"""A torchvision weights file (``.pth`` / ``.pt`` / ``.safetensors``) → a checked cnnjax checkpoint.

The families' converters are listed here explicitly. The fresh init (traced with
``jax.eval_shape``, nothing allocated) is the reference: the converted tree must have exactly its
paths and shapes, or the conversion fails naming the missing, unexpected and mis-shaped paths.
The only thing read from the file rather than the model is the number of classes, so a
torchvision model fine-tuned to 10 classes converts without flags.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnjax import trees
from cnnjax.errors import UserError, unknown
from cnnjax.models import registry
from cnnjax.transfer import (pretrained, shapes, tv_alexnet, tv_googlenet, tv_inception_v3,
                             tv_resnet, tv_vgg)
from cnnjax.data.preprocessing import Weights

_FAMILIES = (tv_alexnet, tv_vgg, tv_googlenet, tv_inception_v3, tv_resnet)
SUFFIXES = (".pth", ".pt", ".safetensors")


def _build(families) -> tuple[dict[str, Any], dict[str, tuple[Weights, ...]]]:
  converters, weights = {}, {}
  for family in families:
    for name, convert_fn in family.CONVERTERS.items():
      if name in converters:
        raise ValueError(f"torchvision converter {name!r} is registered twice")
      converters[name], weights[name] = convert_fn, family.WEIGHTS[name]
  return converters, weights


_CONVERTERS, _WEIGHTS = _build(_FAMILIES)


def names() -> list[str]:
  """Every model with a torchvision converter."""
  return list(_CONVERTERS)


def torchvision_weights(name: str) -> tuple[Weights, ...]:
  """torchvision's weights for ``name`` (default first); an unknown name lists close matches."""
  if name not in _WEIGHTS:
    if name in registry.names():
      raise UserError(f"model {name!r} has no torchvision weights. Valid choices: "
                      f"{', '.join(sorted(_WEIGHTS))}.")
    raise unknown("torchvision model", name, _WEIGHTS)
  return _WEIGHTS[name]


# --- reading ----------------------------------------------------------------------------------

def _unwrap(obj: Any, path: str) -> Mapping[str, Any]:
  """The state dict inside a training checkpoint (``{'state_dict': ...}``, DataParallel keys)."""
  for key in ("state_dict", "model_state_dict", "model"):
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
      obj = obj[key]
  if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) for k in obj):
    raise UserError(f"{path!r} holds a {type(obj).__name__}, not a state dict; save "
                    "model.state_dict() instead.")
  if all(k.startswith("module.") for k in obj):  # saved from nn.DataParallel
    obj = {k.removeprefix("module."): v for k, v in obj.items()}
  return obj


def _read_torch(path: str) -> Mapping[str, Any]:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise UserError(f"reading {path!r} needs PyTorch (pip install torch); or save the state "
                    "dict as .safetensors, which needs only the safetensors package.") from None
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # pickle and zip errors of every kind
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"can't read {path!r} with torch.load(weights_only=True): {first}") from None
  return {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.numpy()
          for k, v in _unwrap(obj, path).items() if isinstance(v, torch.Tensor)}


def _read_safetensors(path: str) -> Mapping[str, Any]:
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  try:
    return _unwrap(load_file(path), path)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # header and dtype errors
    raise UserError(f"can't read {path!r} as safetensors: {e}") from None


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """A PyTorch state dict from ``.pth`` / ``.pt`` (needs torch) or ``.safetensors`` (doesn't)."""
  if not os.path.isfile(path):
    raise UserError(f"weights file {path!r} does not exist.")
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in SUFFIXES:
    raise UserError(f"weights file {path!r} has an unknown suffix {suffix!r}. Valid choices: "
                    f"{', '.join(SUFFIXES)}.")
  reader = _read_safetensors if suffix == ".safetensors" else _read_torch
  return {k: np.asarray(v) for k, v in reader(path).items()}


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def identify(name: str, path: str, digest: str) -> Weights | None:
  """torchvision's weights that ``path`` is, by file name or by the hash in the file name."""
  for w in torchvision_weights(name):
    if os.path.basename(path) == w.file or digest.startswith(w.file.rsplit("-", 1)[-1][:8]):
      return w
  return None


# --- checking ---------------------------------------------------------------------------------

def _infer_num_classes(name: str, options: Mapping[str, Any], variables: dict) -> int | None:
  """The class count of the file's heads: the leaves whose shape depends on num_classes."""
  spec = registry.get_spec(name)
  heads = shapes.head_paths(registry.create(name, **options),
                            (1, spec.input_size, spec.input_size, spec.channels))
  have = trees.shapes(variables)
  sizes = {have[p][-1] for p in heads if have.get(p)}
  return sizes.pop() if len(sizes) == 1 else None


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None,
            aux_logits: bool | None = None) -> tuple[dict, int, dict[str, Any]]:
  """(variables, num_classes, model options) for ``create(name, num_classes, **options)``.

  ``num_classes`` None reads it from the file's classifier; ``aux_logits`` None keeps the
  model's default (GoogLeNet: off, the file's untrained heads are dropped; Inception v3: on).
  Anything that does not fit the model raises ``UserError`` naming the paths.
  """
  torchvision_weights(name)  # an unknown name fails here, with close matches
  options = {}
  if "aux_logits" in registry.options(name):
    default = registry.options(name)["aux_logits"]
    options["aux_logits"] = default if aux_logits is None else aux_logits
  elif aux_logits is not None:
    raise UserError(f"model {name!r} has no auxiliary heads; drop --aux_logits.")
  try:
    variables = _CONVERTERS[name](state_dict, **options)
  except ValueError as e:
    raise UserError(f"the state dict does not fit {name}: {e}") from None
  infer, num_classes = num_classes is None, num_classes or registry.get_spec(name).num_classes
  expected = shapes.reference(name, num_classes, options)
  problem = shapes.mismatch(expected, variables)
  if problem and infer:
    inferred = _infer_num_classes(name, options, variables)
    if inferred and inferred != num_classes:
      num_classes = inferred
      problem = shapes.mismatch(shapes.reference(name, num_classes, options), variables)
  if problem:
    hint = " (set --aux_logits to match the file's heads)" if "aux_logits" in options else ""
    raise UserError(f"the state dict does not fit {name} with num_classes={num_classes}"
                    f"{''.join(f', {k}={v}' for k, v in options.items())}: {problem}{hint}")
  return variables, num_classes, options


def convert_file(name: str, weights: str, out: str, *, num_classes: int | None = None,
                 aux_logits: bool | None = None, weights_tag: str | None = None,
                 resize: int | None = None, crop: int | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
  """Converts the weights file for model ``name`` into ``out``; returns its pretrained.json."""
  choices = torchvision_weights(name)
  state_dict = read_state_dict(weights)
  digest = sha256(weights)
  found = identify(name, weights, digest)
  tags = {w.tag: w for w in choices}
  if weights_tag is not None and weights_tag not in tags:
    raise unknown(f"torchvision weights tag for {name}:", weights_tag, tags)
  if weights_tag is not None and found is not None and found.tag != weights_tag:
    raise UserError(f"{weights!r} is torchvision's {name} {found.tag} file, not {weights_tag}.")
  chosen = tags[weights_tag] if weights_tag else found or choices[0]
  base = chosen.preprocessing
  preprocessing = dataclasses.replace(base, resize=resize or base.resize, crop=crop or base.crop)
  variables, num_classes, options = convert(name, state_dict, num_classes=num_classes,
                                            aux_logits=aux_logits)
  source = {"file": os.path.basename(weights), "sha256": digest,
            "torchvision_weights": chosen.tag if (found or weights_tag) else None}
  return pretrained.write(out, model=name, num_classes=num_classes, options=options,
                         variables=variables, preprocessing=preprocessing, source=source,
                         overwrite=overwrite)
