"""The package's shape: imports only point down the layers, no source file passes 400 lines, and
the CLI helpers are defined once. Read from the source (ast), so it also sees imports inside
functions."""

import ast
import glob
import os

import pytest

from tests.test_launch import ROOT

# Bottom to top; a module may import its own layer and those below. The README's Layout section
# draws the same order.
LAYERS = (
    ("cnnjax.errors", "cnnjax.trees", "cnnjax.hugepages", "cnnjax.files", "cnnjax.platforms",
     "cnnjax.compilation"),
    ("cnnjax.config",),
    ("cnnjax.models", "cnnjax.data", "cnnjax.cpu"),  # cpu: a backend that reads models.layers
    ("cnnjax.checkpoint", "cnnjax.parallel", "cnnjax.distributed"),
    ("cnnjax.transfer",),
    ("cnnjax.train",),
    ("cnnjax.inspect", "cnnjax.cli", "cnnjax.sweep"),
)
TOOLS = "__main__"  # python -m cnnjax.<tool>: command-line edges, at the top with cnnjax.cli


def _module(path: str) -> str:
  rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
  return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _layer(module: str) -> int:
  if module.rsplit(".", 1)[-1] == TOOLS or module == "cnnjax.convert_torchvision":
    return len(LAYERS)
  for i, prefixes in enumerate(LAYERS):
    if any(module == p or module.startswith(p + ".") for p in prefixes):
      return i
  raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _imports(path: str) -> set[str]:
  tree = ast.parse(open(path).read())
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
  return {m for m in found if m.split(".")[0] in ("cnnjax", "experiments", "benchmarks")}


SOURCES = sorted(p for p in glob.glob(os.path.join(ROOT, "cnnjax", "**", "*.py"), recursive=True)
                 if os.path.basename(p) != "__init__.py" or os.path.dirname(p) != os.path.join(
                     ROOT, "cnnjax"))


def _target_layer(name: str) -> int | None:
  """The layer of an imported name (``cnnjax.models.layers`` or ``cnnjax.models.create``)."""
  while name.count(".") >= 1:
    try:
      return _layer(name)
    except AssertionError:
      name = name.rsplit(".", 1)[0]
  return None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: os.path.relpath(p, ROOT))
def test_imports_point_down(path):
  module = _module(path)
  here = _layer(module)
  up = []
  for name in sorted(_imports(path)):
    if name.split(".")[0] != "cnnjax":
      up.append(name)  # the library never imports experiments/ or benchmarks/
      continue
    there = _target_layer(name)
    if there is not None and there > here:
      up.append(name)
  assert not up, f"{module} (layer {here}) imports upward: {up}"


def test_no_model_imports_a_backend():
  """Models are plain flax.linen; a backend is chosen where the program starts."""
  models = [p for p in SOURCES if _module(p).startswith("cnnjax.models")]
  backend = {m: sorted(n for n in _imports(p) if n == "cnnjax.cpu" or n.startswith("cnnjax.cpu."))
             for p in models if (m := _module(p))}
  assert models and not any(backend.values()), backend


def test_no_source_file_over_400_lines():
  files = SOURCES + glob.glob(os.path.join(ROOT, "benchmarks", "*.py")) + glob.glob(
      os.path.join(ROOT, "experiments", "*.py")) + [os.path.join(ROOT, "launch.py")]
  long = {os.path.relpath(p, ROOT): n for p in files
          if (n := len(open(p).read().splitlines())) > 400}
  assert not long, long


def test_cli_helpers_are_defined_once():
  files = SOURCES + glob.glob(os.path.join(ROOT, "benchmarks", "*.py")) + glob.glob(
      os.path.join(ROOT, "experiments", "*.py")) + [os.path.join(ROOT, "launch.py")]
  defined = {}
  for p in files:
    for node in ast.walk(ast.parse(open(p).read())):
      if isinstance(node, ast.FunctionDef) and node.name in (
          "fail", "parse_flags", "persistent_cache", "compilation_cache", "_compilation_cache",
          "quiet_logging"):
        defined.setdefault(node.name, []).append(os.path.relpath(p, ROOT))
  assert all(len(v) == 1 for v in defined.values()), defined
  assert set(defined) == {"fail", "parse_flags", "persistent_cache", "quiet_logging"}
