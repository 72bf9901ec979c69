"""The course notebooks (docs/course/*.py, jupytext py:percent) executed top to bottom.

Each runs in a fresh kernel of the running interpreter (a kernelspec written into a temporary
JUPYTER_PATH), with the repository on PYTHONPATH (as for a user who ran ``pip install -e .`` or
started jupyter in the repository), one CPU device, the session's embedded datasets
(TFDS_DATA_DIR), and CNNJAX_COURSE_DIR and CNNJAX_CACHE pointing into ``tmp_path``: the
notebooks write nothing anywhere else. Any error in any cell fails the test.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import pytest

jupytext = pytest.importorskip("jupytext", reason="the course needs jupytext and nbclient "
                               "(pip install -r requirements-dev.txt)")
nbclient = pytest.importorskip("nbclient", reason="the course needs jupytext and nbclient "
                               "(pip install -r requirements-dev.txt)")

ROOT = pathlib.Path(__file__).resolve().parents[2]
COURSE = ROOT / "docs" / "course"
NOTEBOOKS = sorted(p.name for p in COURSE.glob("[0-9][0-9]_*.py"))
KERNEL = "cnnjax-course-test"
CELL_TIMEOUT_S = 300


def _kernelspec(jupyter_path: pathlib.Path) -> None:
  spec = jupyter_path / "kernels" / KERNEL
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": f"cnnjax test ({sys.executable})", "language": "python"}))


def test_the_eight_sections_are_there():
  assert len(NOTEBOOKS) == 8, NOTEBOOKS


@pytest.mark.e2e
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, data_dir, tmp_path, monkeypatch):
  jupyter_path = tmp_path / "jupyter"
  _kernelspec(jupyter_path)
  out = tmp_path / "out"
  out.mkdir()
  monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
  monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter_data"))
  monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
  monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
  monkeypatch.setenv("CNNJAX_COURSE_DIR", str(out))
  # the compiled programs (cnnjax.compilation: the kernel's and a sweep's runs') under out/
  monkeypatch.setenv("CNNJAX_CACHE", str(out / "jax_cache"))
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)  # the embedded datasets, built once per session
  # one CPU device, as a student has: not the 8 virtual devices conftest gives the tests
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "").strip())
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
  notebook = jupytext.read(COURSE / name)
  client = nbclient.NotebookClient(notebook, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
                                   resources={"metadata": {"path": str(out)}})
  start = time.monotonic()
  client.execute()  # raises CellExecutionError, naming the cell and the traceback
  print(f"{name}: {time.monotonic() - start:.1f} s")
