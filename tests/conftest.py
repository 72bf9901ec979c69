"""Test setup: 8 virtual CPU devices (set before JAX starts) and one shared offline data dir."""

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A tfds data dir holding the embedded datasets, built once per test session."""
  from cnnjax.data import sources  # pylint: disable=import-outside-toplevel
  path = str(tmp_path_factory.mktemp("tfds"))
  for name in ("mnist5k", "uci_digits"):
    sources.load(name, "train", path)
  return path


# Modules whose module-scoped fixture is a whole run (or a Slurm cluster): pytest-xdist's "load"
# scheduling would hand their tests to both workers, and each worker would build the fixture
# again. They go to one worker as a unit; every other test is scheduled one by one, as "load"
# does. (xdist's own `xdist_group` mark would do this, but does not group under pytest 9.2.)
ONE_WORKER_MODULES = frozenset({
    "tests/train/test_loop_multihost.py",  # four 2-process runs
    "tests/train/test_loop_faults.py",  # the uninterrupted run every fault is compared with
    "tests/sweep/test_real_slurm.py",  # one Slurm cluster per host at a time
    "tests/inspect/test_visualize.py",  # a trained LeNet-5 and its pictures
    "tests/transfer/test_finetune.py",  # a pretrained resnet20
    "tests/transfer/test_finetune_pretrained.py",  # a converted torchvision resnet18
})


def pytest_xdist_make_scheduler(config, log):
  """With ``-n`` and the default ``--dist=load``: ONE_WORKER_MODULES' tests as one unit each."""
  if config.getoption("dist") != "load":
    return None
  from xdist.scheduler import LoadScopeScheduling  # pylint: disable=import-outside-toplevel

  class ModulesTogether(LoadScopeScheduling):

    def _split_scope(self, nodeid: str) -> str:
      module = nodeid.split("::", 1)[0]
      return module if module in ONE_WORKER_MODULES else nodeid

  return ModulesTogether(config, log)
