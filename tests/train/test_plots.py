"""The curves PNG is drawn without touching matplotlib's global backend."""

import os
import subprocess
import sys

import pytest

from cnnjax import files
from cnnjax.train import plots, writers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_curves_are_drawn_from_metrics_jsonl(tmp_path):
  path = tmp_path / files.METRICS
  path.write_text("".join(writers.json_line(s, {"train/loss": 1.0 / s, "train/top1": 0.5}) + "\n"
                          for s in (1, 2, 3)) + writers.json_line(3, {"eval/top1": 0.6}) + "\n")
  plots.curves(str(path), str(tmp_path / "curves.png"), title="t")
  assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
def test_importing_and_drawing_leave_the_backend_alone():
  # In a fresh interpreter: pyplot is never imported, the backend setting is left as it was.
  code = ("import matplotlib; b = matplotlib.rcParams._get_backend_or_none()\n"
          "from cnnjax.train import plots; import sys\n"
          "assert 'matplotlib.pyplot' not in sys.modules\n"
          "assert matplotlib.rcParams._get_backend_or_none() == b, b\n")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
