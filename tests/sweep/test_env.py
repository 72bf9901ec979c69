"""Which devices or cores each worker's children see (pure), and the claims that keep two
processes from running one run."""

import pytest

from cnnjax.errors import UserError
from cnnjax.sweep import env, store


def test_cpu_cores_are_split_between_the_workers():
  two = env.slots("cpu", [], workers=2, cpus=[0, 1])
  assert [s.cpus for s in two] == [(0,), (1,)]
  assert two[0].env == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
  assert env.affinity_prefix(two[1]) == ["taskset", "-c", "1"]
  three = env.slots("cpu", [], workers=3, cpus=list(range(8)))
  assert [s.cpus for s in three] == [(0, 1, 2), (3, 4, 5), (6, 7)]
  one = env.slots("cpu", [], cpus=[0, 1])
  assert len(one) == 1 and one[0].cpus is None and env.affinity_prefix(one[0]) == []


def test_one_gpu_per_run_by_default_and_shared_on_request():
  gpus = env.slots("gpu", ["0", "1", "2", "3"])
  assert [s.env for s in gpus] == [{"CUDA_VISIBLE_DEVICES": d} for d in "0123"]
  shared = env.slots("gpu", ["4", "5"], runs_per_device=2)
  assert [s.env["CUDA_VISIBLE_DEVICES"] for s in shared] == ["4", "4", "5", "5"]
  assert all(s.env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" for s in shared)
  with pytest.raises(UserError, match=r"--sweep_workers=3 is more than the 2 gpu device"):
    env.slots("gpu", ["0", "1"], workers=3)


def test_one_tpu_chip_per_process():
  chips = env.slots("tpu", ["0", "1"])
  assert chips[1].env["TPU_VISIBLE_CHIPS"] == "1"
  assert chips[1].env["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,1,1"
  assert chips[0].env["TPU_PROCESS_PORT"] != chips[1].env["TPU_PROCESS_PORT"]
  with pytest.raises(UserError, match=r"belongs to one process"):
    env.slots("tpu", ["0"], runs_per_device=2)


def test_detect_reads_the_visible_devices_without_touching_them():
  assert env.detect({"CUDA_VISIBLE_DEVICES": "2,3"}) == ("gpu", ["2", "3"])
  assert env.detect({"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "0"}) == ("cpu", [])


def test_a_claimed_run_cannot_be_claimed_again(tmp_path):
  with store.claim(str(tmp_path)) as first:
    assert first and store.is_claimed(str(tmp_path))
    with store.claim(str(tmp_path)) as second:
      assert not second
  assert not store.is_claimed(str(tmp_path))


def test_points_removed_from_the_sweep_are_listed_and_kept(tmp_path):
  from cnnjax import config as config_lib  # pylint: disable=import-outside-toplevel
  from cnnjax.sweep import Sweep, spec  # pylint: disable=import-outside-toplevel
  config = config_lib.load("experiments/lenet_mnist.py")
  write = lambda values: store.write_sweep(
      str(tmp_path), spec.expand(Sweep({"model_options.pool": values}, seeds=(0,)), config),
      launch="launch.py", config_spec="experiments/lenet_mnist.py", cli_overrides=[],
      command=["launch.py"])
  write(["max", "avg"])
  (tmp_path / "pool=avg" / "seed=0").mkdir(parents=True)
  record = write(["max"])
  assert record.removed == ("pool=avg/seed=0",) and (tmp_path / "pool=avg" / "seed=0").is_dir()
  assert [t.workdir for t in record.trials] == ["pool=max/seed=0"]
  assert store.read_sweep(str(tmp_path)) == record
  assert write(["max", "avg"]).removed == ()  # back in the sweep
  config.batch_size = 64
  with pytest.raises(UserError, match=r"holds a sweep of another base config"):
    store.write_sweep(str(tmp_path), spec.expand(Sweep({"model_options.pool": ["max"]}), config),
                      launch="launch.py", config_spec="x", cli_overrides=[], command=["x"])
