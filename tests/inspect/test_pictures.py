"""``pictures`` draws without touching matplotlib's global state (a notebook's backend)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image as mpimage

from cnnjax.inspect import pictures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A fresh interpreter whose backend is SVG (as a notebook's would be inline): importing and
# drawing must leave it so, without importing pyplot.
_DRAW = """
import sys
import matplotlib
before = matplotlib.get_backend()
import numpy as np
from cnnjax.inspect import pictures
rng = np.random.default_rng(0)
pictures.draw_filters(rng.random((6, 5, 5, 1)), sys.argv[1] + "/filters.png", "six filters")
picture = rng.random((12, 12, 3))
pictures.draw_prediction(picture, rng.random((12, 12)), rng.random((12, 12)),
                         sys.argv[1] + "/prediction.png", "predicted 3", "stage2")
print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


@pytest.mark.e2e
def test_drawing_leaves_the_backend_alone_and_writes_pngs(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="svg", JAX_PLATFORMS="cpu",
             CNNJAX_CPU_KERNELS="xla")
  done = subprocess.run([sys.executable, "-c", _DRAW, str(tmp_path)], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=300, check=False)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ["svg", "svg", "False"]
  filters = mpimage.imread(tmp_path / "filters.png")
  assert filters.ndim == 3 and filters.shape[1] >= 240 and filters.std() > 0.05
  assert mpimage.imread(tmp_path / "prediction.png").shape[:2] == (3.2 * 80, 8.4 * 80)


def test_caption_says_what_a_picture_shows():
  assert pictures.caption({"tiles": 6}) == " (6 filter tiles)"
  assert pictures.caption({"channels": 16}) == " (16 channels)"
  facts = {"stem": {"box": (0, 4, 0, 4)}, "stage2": {"box": (-2, 13, -2, 13)}}
  assert pictures.caption(facts) == " (stem: RF 5x5; stage2: RF 16x16)"
  maxed = {"channels": [0, 1], "start": np.array([0.1, 0.3]), "final": np.array([2.0, 4.0])}
  assert pictures.caption(maxed) == (" (target activation 0.2 on the starting noise -> 3, mean "
                                     "over 2 channels)")
