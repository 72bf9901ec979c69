"""Resuming a run: the checks that a workdir's checkpoints fit the config, then the restore.

Training and ``--mode=eval`` run the same checks, before anything is written (``config`` is the
run's config as JSON values, ``resolve.Run.config``):
1. the keys that fix the data order and the model (``RESUME_KEYS``; for evaluation only the
   model's, ``MODEL_KEYS``) equal those in the workdir's ``config.json``;
2. the newest checkpoint's tree (paths, shapes, dtypes, read from its metadata) equals the
   state this config describes; a difference names the first differing paths and the config
   keys that cause them;
3. the restore itself, falling back to older checkpoints when one is damaged
   (``checkpoint.restore_newest``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import jax

from cnnjax import checkpoint, config as config_lib, files
from cnnjax.errors import UserError

# What a resumed run must share with the run that wrote the checkpoint: the data order (dataset,
# split, batch size, seed) and the shape of the train state (model, optimizer, frozen layers).
RESUME_KEYS = ("model", "model_options", "num_classes", "dataset", "data.train_split",
               "data.train_per_class", "batch_size", "seed", "optimizer.name", "finetune")
# What evaluating a checkpoint needs to share with the run that wrote it (the tree check then
# covers the optimizer state): the model; the data order doesn't matter there.
MODEL_KEYS = ("model", "model_options", "num_classes")

# The config keys each part of the train state depends on (prefixes of dotted keys).
STATE_KEYS = {
    "params": ("model", "model_options", "num_classes", "data.image_size", "data.channels",
               "data.crop", "init_from"),
    "batch_stats": ("model", "model_options", "num_classes", "data.image_size", "data.crop"),
    "opt_state": ("optimizer", "finetune", "model", "model_options", "num_classes"),
    "ema": ("ema", "model", "model_options", "num_classes", "data.image_size", "data.crop"),
    "step": (),
}


def _flat(config: Mapping[str, Any]) -> dict[str, Any]:
  """A config as JSON → ``{'optimizer.name': ...}``, the dotted keys of ``--config.x=y``."""
  return {k: config_lib.get_key(config, k) for k in config_lib.leaf_keys(config)}


def saved_config(workdir: str) -> dict[str, Any] | None:
  """The flattened ``config.json`` of the run in ``workdir``, if it has one."""
  path = os.path.join(workdir, files.CONFIG)
  if not os.path.exists(path):
    return None
  return _flat(files.read_json(path))


def _changed(old: dict[str, Any], config: Mapping[str, Any]) -> dict[str, tuple]:
  new = _flat(dict(config))
  return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)}


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
  return any(key == p or key.startswith(p + ".") for p in prefixes)


def check_config(workdir: str, config: Mapping[str, Any],
                 keys: tuple[str, ...] = RESUME_KEYS) -> None:
  """Refuses to resume with other ``keys`` than the workdir's ``config.json``."""
  old = saved_config(workdir)
  if old is None:
    return
  changed = _changed(old, config)
  keys = [k for k in keys if any(_under(c, (k,)) for c in changed)]
  if keys:
    k = next(c for c in changed if _under(c, (keys[0],)))
    before, after = changed[k]
    raise UserError(f"{workdir} holds a run with config.{k}={before!r}, not {after!r}: resuming "
                    f"needs the same {', '.join(keys)}; use a new --workdir (or "
                    "config.init_from to start from its weights).")


def mismatch(workdir: str, config: Mapping[str, Any], step: int,
             differences: list[str]) -> UserError:
  """One line: the first differing paths of checkpoint ``step`` and the keys that cause them."""
  sections = {d.split("/", 1)[0].split(" ", 1)[0] for d in differences}
  suspects = tuple(k for s in sorted(sections) for k in STATE_KEYS.get(s, ()))
  old = saved_config(workdir)
  causes = [f"config.{k} ({before!r} there, {after!r} here)"
            for k, (before, after) in (_changed(old, config).items() if old else ())
            if _under(k, suspects)]
  if not causes:
    causes = [f"one of {', '.join('config.' + k for k in dict.fromkeys(suspects))}"]
  more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
  return UserError(f"checkpoint step {step} in {workdir}/checkpoints doesn't fit this config: "
                   f"{'; '.join(differences[:3])}{more}; caused by {', '.join(causes)}. Use the "
                   "config that wrote it, or a new --workdir.")


def restore(workdir: str, config: Mapping[str, Any], mgr, like: Any, *,
            keys: tuple[str, ...] = RESUME_KEYS, set_aside: bool = True, quiet: bool = False
            ) -> checkpoint.Restored | None:
  """The newest checkpoint in ``mgr`` that fits ``config`` and restores; None if none yet.

  Training sets damaged checkpoints aside (it will save those steps again); evaluation only
  reads. One line on stderr names the step restored, unless ``quiet``."""
  if not mgr.all_steps():
    return None
  check_config(workdir, config, keys)
  expected = checkpoint.leaf_specs(like)

  def fits(step: int, saved: dict) -> None:
    differences = checkpoint.tree_differences(saved, expected)
    if differences:
      raise mismatch(workdir, config, step, differences)

  restored = checkpoint.restore_newest(mgr, like, fits, set_aside=set_aside)
  if restored is not None and jax.process_index() == 0 and not quiet:
    print(f"resuming from step {restored.step} ({mgr.directory}/{restored.step})",
          file=sys.stderr, flush=True)
  return restored
