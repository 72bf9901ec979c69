"""Stable names for sweep points: the keys that differ from the base config, never a timestamp.

``model_options.activation='gelu'`` over a base without it is ``activation=gelu``; a key is
shortened to its last part unless two swept keys share that part; a point equal to the base is
``base``. Names are directory names (``DIR/<variant>/seed=<s>``): characters outside
``[A-Za-z0-9._=,+-]`` become ``_``. The same config always maps to the same name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cnnjax import config as config_lib

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


def value_text(value: Any) -> str:
  """A short, stable spelling of a config value."""
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "-".join(value_text(v) for v in value) or "none"
  return str(value)


def short_keys(keys: Sequence[str]) -> dict[str, str]:
  """Each key's last dotted part, or the whole key where the last parts clash."""
  last = [k.split(".")[-1] for k in keys]
  return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _differs(config, key: str, value: Any) -> bool:
  node = config_lib.get_key(config, key)
  if isinstance(node, (tuple, list)) and isinstance(value, (tuple, list)):
    return list(node) != list(value)
  return node != value


def name_of(overrides: Mapping[str, Any], config, shorts: Mapping[str, str]) -> str:
  parts = [f"{shorts[k]}={value_text(v)}" for k, v in overrides.items()
           if _differs(config, k, v)]
  return _UNSAFE.sub("_", ",".join(parts)) if parts else "base"


def names(points: Sequence[tuple[str | None, Mapping[str, Any]]], config) -> list[str]:
  """The name of every point: its own (``variants``) or made from the keys it changes."""
  keys = list(dict.fromkeys(k for _, o in points for k in o))
  shorts = short_keys(keys)
  return [_UNSAFE.sub("_", given) if given else name_of(o, config, shorts) for given, o in points]
