"""cnnjax installs as a package: a copy built from pyproject.toml trains LeNet-5 from
``cnnjax.config.defaults()`` in a directory that holds no checkout."""

import pytest
import json
import os
import shutil
import subprocess
import sys

from tests.test_launch import ROOT

SCRIPT = """
import json, sys
import cnnjax
from cnnjax import config
from cnnjax.train import loop
assert cnnjax.__file__.startswith(sys.argv[1]), cnnjax.__file__
c = config.defaults()
c.num_steps, c.eval_every_epochs, c.log_every_steps = 4, 0.0, 2
c.data.data_dir = sys.argv[2]
print(json.dumps(loop.train(c, "run")))
"""


@pytest.mark.e2e
def test_an_installed_copy_trains_from_the_defaults_outside_the_repository(tmp_path, data_dir):
  source = tmp_path / "source"  # built from a copy, so the build leaves nothing in the checkout
  shutil.copytree(os.path.join(ROOT, "cnnjax"), source / "cnnjax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "requirements.txt", "README.md"):
    shutil.copy(os.path.join(ROOT, name), source / name)
  site = tmp_path / "site"
  built = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--no-build-isolation", "--target", str(site), str(source)],
                         capture_output=True, text=True, timeout=300)
  assert built.returncode == 0, built.stderr[-2000:]
  assert (site / "cnnjax" / "train" / "loop.py").exists()
  assert not (site / "experiments").exists() and not (site / "tests").exists()
  away = tmp_path / "elsewhere"
  away.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = str(site)
  done = subprocess.run([sys.executable, "-c", SCRIPT, str(site), data_dir], cwd=away, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  final = json.loads(done.stdout.strip().splitlines()[-1])
  assert 0.0 <= final["eval/top1"] <= 1.0 and final["eval/loss"] > 0
  assert (away / "run" / "checkpoints" / "4").is_dir()
