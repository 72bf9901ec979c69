"""checkpoint.py in-process: real orbax checkpoints of a tiny state in tmp_path, damaged on disk.

The one fallback loop behind every read (resume/eval, init_from's partial restore, the sweep's
parameter count): newest first, one warning per damaged step, the damaged ones set aside only
when asked, one error naming each step when none restores."""

import os

import numpy as np
import pytest

from cnnjax import checkpoint
from cnnjax.errors import RunFailed, UserError


def tiny_state(step, value=1.0):
  """A train state's shape in miniature: 6 + 3 = 9 parameters, BatchNorm statistics, an
  optimizer moment."""
  return {"step": np.asarray(step, np.int32),
          "params": {"fc": {"kernel": np.full((2, 3), value, np.float32),
                            "bias": np.full((3,), value, np.float32)}},
          "batch_stats": {"bn": {"mean": np.full((3,), value, np.float32)}},
          "opt_state": {"mu": {"fc": {"kernel": np.zeros((2, 3), np.float32)}}}}


def saved(directory, steps, nan_at=()):
  """A manager in ``directory``/checkpoints with ``steps`` saved (state values = the step)."""
  mgr = checkpoint.manager(os.path.join(directory, "checkpoints"), keep=10)
  for step in steps:
    state = tiny_state(step, np.nan if step in nan_at else float(step))
    checkpoint.save(mgr, step, state, {"position": step}, {"train/loss_sum": 0.5 * step})
    checkpoint.finish(mgr)
  return mgr


def state_dir(directory, step):
  return os.path.join(directory, "checkpoints", str(step), "state")


def truncate_data(directory, step):
  """Every data file of ``step`` cut to 10 bytes (a disk that filled up mid-write)."""
  for root, _, names in os.walk(state_dir(directory, step)):
    for name in names if os.path.basename(root) == "d" else ():
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(10)


def remove_manifest(directory, step):
  os.remove(os.path.join(state_dir(directory, step), "manifest.ocdbt"))


def warnings(err):
  return [l for l in err.splitlines() if l.startswith("warning:")]


def test_the_newest_that_restores_is_returned_and_the_damaged_ones_set_aside(tmp_path, capsys):
  mgr = saved(tmp_path, [10, 20, 30])
  truncate_data(tmp_path, 30)
  remove_manifest(tmp_path, 20)
  restored = checkpoint.restore_newest(mgr, tiny_state(0))
  assert restored.step == 10 and restored.data == {"position": 10}
  assert restored.window == {"train/loss_sum": 5.0}
  np.testing.assert_array_equal(restored.state["params"]["fc"]["bias"], [10.0, 10.0, 10.0])
  lines = warnings(capsys.readouterr().err)
  assert len(lines) == 3, lines
  assert lines[0].startswith("warning: checkpoint step 30 can't be restored (")
  assert lines[0].endswith("; trying step 20.")
  assert lines[1].startswith("warning: checkpoint step 20 can't be restored (")
  assert lines[1].endswith("; trying step 10.") and "metadata" in lines[1]
  damaged = tmp_path / "damaged_checkpoints"
  assert lines[2] == f"warning: moved the damaged checkpoints 30, 20 to {damaged}."
  assert sorted(os.listdir(damaged)) == ["20", "30"]  # kept, never deleted
  assert mgr.all_steps() == [10]


def test_a_reader_moves_nothing(tmp_path, capsys):
  mgr = saved(tmp_path, [10, 20])
  truncate_data(tmp_path, 20)
  assert checkpoint.restore_newest(mgr, tiny_state(0), set_aside=False).step == 10
  assert [l.split()[3] for l in warnings(capsys.readouterr().err)] == ["20"]
  assert not (tmp_path / "damaged_checkpoints").exists() and sorted(mgr.all_steps()) == [10, 20]


def test_none_restorable_is_one_error_naming_each_step_and_moving_nothing(tmp_path, capsys):
  mgr = saved(tmp_path, [10, 20])
  remove_manifest(tmp_path, 10)
  remove_manifest(tmp_path, 20)
  with pytest.raises(RunFailed) as e:
    checkpoint.restore_newest(mgr, tiny_state(0))
  message = str(e.value)
  assert message.startswith(f"none of the checkpoints in {tmp_path}/checkpoints can be restored "
                            "(step 20: ")
  assert "; step 10: " in message and message.endswith("; nothing was moved.")
  assert "\n" not in message
  assert warnings(capsys.readouterr().err)[-1].endswith("; no older one is left.")
  assert sorted(mgr.all_steps()) == [10, 20]


def test_a_non_finite_checkpoint_is_skipped(tmp_path, capsys):
  mgr = saved(tmp_path, [10, 20], nan_at=(20,))
  assert checkpoint.restore_newest(mgr, tiny_state(0)).step == 10
  [line, moved] = warnings(capsys.readouterr().err)
  assert line == ("warning: checkpoint step 20 can't be restored (FloatingPointError: it holds "
                  "non-finite values: a diverged run saved it); trying step 10.")
  assert moved.startswith("warning: moved the damaged checkpoints 20 to ")


def test_a_tree_that_does_not_fit_the_config_is_the_configs_fault(tmp_path, capsys):
  mgr = saved(tmp_path, [10, 20])
  checked = []

  def check(step, specs):
    checked.append(step)
    assert specs["params/fc/kernel"] == ((2, 3), "float32") and specs["step"] == ((), "int32")
    raise UserError("does not fit")

  with pytest.raises(UserError, match="does not fit"):
    checkpoint.restore_newest(mgr, tiny_state(0), check)
  assert checked == [20] and not warnings(capsys.readouterr().err)  # no fallback, nothing moved
  assert sorted(mgr.all_steps()) == [10, 20]


def test_no_checkpoint_is_none(tmp_path):
  mgr = checkpoint.manager(str(tmp_path / "checkpoints"), keep=2)
  assert checkpoint.restore_newest(mgr, tiny_state(0)) is None
  assert checkpoint.latest_variables(str(tmp_path)) == {}
  assert checkpoint.param_count(str(tmp_path)) is None
  assert checkpoint.param_count(str(tmp_path / "nowhere")) is None


def drop_chunks(directory, step, prefix):
  """Deletes the stored chunks of every array whose name starts with ``prefix``."""
  import tensorstore as ts  # pylint: disable=import-outside-toplevel
  kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{state_dir(directory, step)}/"}
                       ).result()
  for key in [k.decode() for k in kv.list().result()]:
    if key.startswith(prefix) and not key.endswith(".zarray"):
      kv.delete_range(ts.KvStore.KeyRange(key, key + "\0")).result()


def test_latest_variables_reads_only_params_and_batch_stats(tmp_path, capsys):
  mgr = saved(tmp_path, [20])
  drop_chunks(tmp_path, 20, "opt_state.")
  with pytest.raises(RunFailed):  # the whole state of step 20 no longer restores...
    checkpoint.restore_newest(mgr, tiny_state(0), set_aside=False)
  capsys.readouterr()
  variables = checkpoint.latest_variables(str(tmp_path))  # ...its variables do, from a workdir
  assert sorted(variables) == ["batch_stats", "params"]
  assert isinstance(variables["params"]["fc"]["kernel"], np.ndarray)
  np.testing.assert_array_equal(variables["batch_stats"]["bn"]["mean"], [20.0, 20.0, 20.0])
  assert not warnings(capsys.readouterr().err)
  assert checkpoint.latest_variables(str(tmp_path / "checkpoints"))["params"]["fc"]["bias"][0] == 20


def test_latest_variables_falls_back_and_moves_nothing(tmp_path, capsys):
  saved(tmp_path, [10, 20])
  truncate_data(tmp_path, 20)
  assert checkpoint.latest_variables(str(tmp_path))["params"]["fc"]["bias"][0] == 10.0
  [line] = warnings(capsys.readouterr().err)
  assert line.startswith("warning: config.init_from: checkpoint step 20 can't be restored (")
  assert line.endswith("; trying step 10.")
  assert not (tmp_path / "damaged_checkpoints").exists()
  truncate_data(tmp_path, 10)
  with pytest.raises(UserError, match=r"^config.init_from: none of the checkpoints in .* can be "
                                      r"restored \(step 20: .*; step 10: .*\); nothing was moved"):
    checkpoint.latest_variables(str(tmp_path))


def test_param_count_reads_the_newest_readable_metadata(tmp_path, capsys):
  saved(tmp_path, [10, 20])
  assert checkpoint.param_count(str(tmp_path)) == 2 * 3 + 3  # params only, not batch_stats
  truncate_data(tmp_path, 20)  # no array is read: damaged data doesn't matter
  assert checkpoint.param_count(str(tmp_path / "checkpoints")) == 9
  os.remove(os.path.join(state_dir(tmp_path, 20), "_METADATA"))
  assert checkpoint.param_count(str(tmp_path)) == 9  # step 10's
  os.remove(os.path.join(state_dir(tmp_path, 10), "_METADATA"))
  assert checkpoint.param_count(str(tmp_path)) is None
  assert not warnings(capsys.readouterr().err)  # a count is a quiet question


def test_tree_differences_name_each_leaf_against_the_configs_state():
  saved_specs = {"params/w": ((2, 3), "float32"), "opt_state/0/mu/w": ((2, 3), "float32")}
  expected = {"params/w": ((2, 4), "float32"), "opt_state/1/mu/w": ((2, 4), "float32")}
  assert checkpoint.tree_differences(saved_specs, expected) == [
      "opt_state/0/mu/w float32[2, 3] is in the checkpoint, not in this config's state",
      "opt_state/1/mu/w float32[2, 4] is not in the checkpoint",
      "params/w is float32[2, 3] in the checkpoint, float32[2, 4] in this config's state"]
  assert checkpoint.tree_differences(expected, expected) == []


def test_latest_variables_with_ema_reads_the_averages_or_says_there_are_none(tmp_path):
  mgr = checkpoint.manager(os.path.join(tmp_path, "checkpoints"), keep=10)
  state = tiny_state(5, 5.0)
  state["ema"] = {"params": tiny_state(0, 0.5)["params"],
                  "batch_stats": tiny_state(0, 0.25)["batch_stats"]}
  checkpoint.save(mgr, 5, state, {"position": 5}, {})
  checkpoint.finish(mgr)
  averages = checkpoint.latest_variables(str(tmp_path), ema=True)
  assert sorted(averages) == ["batch_stats", "params"]
  np.testing.assert_array_equal(averages["params"]["fc"]["bias"], [0.5] * 3)
  np.testing.assert_array_equal(averages["batch_stats"]["bn"]["mean"], [0.25] * 3)
  assert checkpoint.latest_variables(str(tmp_path))["params"]["fc"]["bias"][0] == 5.0
  plain = tmp_path / "plain"
  saved(plain, [10])
  with pytest.raises(UserError, match=r"checkpoints/10 holds no moving averages of the weights "
                                      r"\(its run had config.ema.decay=0\)\.$"):
    checkpoint.latest_variables(str(plain), ema=True)
