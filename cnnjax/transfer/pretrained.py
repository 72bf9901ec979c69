"""A pretrained-weights directory, as ``python -m cnnjax.transfer`` writes it.

    DIR/variables/       orbax checkpoint (StandardCheckpointer) of {'params', 'batch_stats'},
                         float32 numpy leaves, paths as the model's init creates them
    DIR/pretrained.json  {format, model, num_classes, options, preprocessing, source}

The checkpoint is written first (orbax renames it into place when complete), the JSON last and
atomically: a directory with a pretrained.json is complete.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import linen as nn

from cnnjax import files
from cnnjax.errors import UserError
from cnnjax.models import registry
from cnnjax.transfer import shapes
from cnnjax.data.preprocessing import Preprocessing

FORMAT = "cnnjax.pretrained/1"
INFO = "pretrained.json"
VARIABLES = "variables"


def write(out: str, *, model: str, num_classes: int, options: Mapping[str, Any],
         variables: Mapping[str, Any], preprocessing: Preprocessing, source: Mapping[str, Any],
         overwrite: bool = False) -> dict[str, Any]:
  """Writes ``out`` (see the module docstring); returns the contents of its pretrained.json."""
  out = os.path.abspath(out)
  info_path, variables_path = os.path.join(out, INFO), os.path.join(out, VARIABLES)
  if not overwrite and (os.path.exists(info_path) or os.path.exists(variables_path)):
    raise UserError(f"{out!r} already holds converted weights; pass --overwrite to replace them.")
  try:
    os.makedirs(out, exist_ok=True)
    if os.path.exists(info_path):
      os.remove(info_path)  # while the variables are replaced, the directory is incomplete
  except OSError as e:
    raise UserError(f"can't write to {out!r}: {e.strerror or e}.") from None
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(variables_path, dict(variables), force=overwrite)
  checkpointer.wait_until_finished()
  checkpointer.close()
  info = {"format": FORMAT, "model": model, "num_classes": num_classes, "options": dict(options),
          "preprocessing": preprocessing.to_json(), "source": dict(source)}
  files.write_json(info_path, info, indent=2)
  return info


def read_info(directory: str) -> dict[str, Any]:
  """The pretrained.json of ``directory``, checked."""
  path = os.path.join(directory, INFO)
  if not os.path.isfile(path):
    raise UserError(f"{directory!r} holds no {INFO}: not a directory written by "
                    "python -m cnnjax.transfer (or the conversion did not finish).")
  info = files.read_json(path)
  if info.get("format") != FORMAT:
    raise UserError(f"{path!r} has format {info.get('format')!r}; this cnnjax reads {FORMAT!r}.")
  return info


def read(directory: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """(pretrained.json, variables as numpy arrays) of ``directory``, without building the model."""
  info = read_info(directory)
  checkpointer = ocp.StandardCheckpointer()
  variables = checkpointer.restore(os.path.join(os.path.abspath(directory), VARIABLES))
  checkpointer.close()
  return info, variables


def load_pretrained(directory: str, **options: Any) -> tuple[nn.Module, dict, Preprocessing]:
  """(model, variables, preprocessing) from a directory ``python -m cnnjax.transfer`` wrote.

  ``model.apply(variables, preprocessing(images), train=False)`` gives the logits of the
  original torchvision model on the same images. ``options`` override the model options saved
  with the weights (``dtype='bfloat16'``, ``dropout=...``); options that change the variables
  (``aux_logits``) fail with the differing paths.
  """
  info, variables = read(directory)
  options = {**info["options"], **options}
  model = registry.create(info["model"], num_classes=info["num_classes"], **options)
  problem = shapes.mismatch(shapes.reference(info["model"], info["num_classes"], options),
                            variables)
  if problem:
    raise UserError(f"the weights in {directory!r} do not fit {info['model']} with options "
                    f"{options}: {problem}")
  return model, jax.device_put(variables), Preprocessing.from_json(info["preprocessing"])
