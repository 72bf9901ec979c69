"""The transfer demo's plumbing, at a size that runs in seconds (the real numbers are the README's)."""

import pytest

from experiments import transfer_demo as demo


@pytest.mark.e2e
def test_demo_runs_every_mode_and_tabulates(tmp_path, data_dir, monkeypatch):
  calls = []
  real_train = demo._train

  def short(mode, workdir, data_dir_, **overrides):
    calls.append((mode, overrides.get("seed"), overrides.get("init_from")))
    fast = {"num_steps": 3, "batch_size": 8} if mode != "pretrain" else {"num_epochs": 0.05}
    return real_train(mode, workdir, data_dir_, **{**overrides, **fast})

  monkeypatch.setattr(demo, "_train", short)
  results = demo.run(str(tmp_path), seeds=2, per_class=2, data_dir=data_dir)
  assert set(results) == {"pretrain (mnist5k test)", "linear_probe", "finetune", "scratch"}
  assert all(len(results[m]) == 2 for m in demo.MODES)
  pre = str(tmp_path / "pretrain")
  assert ("finetune", 1, pre) in calls and ("scratch", 0, None) in calls
  text = demo.table(results)
  assert text.count("\n") == 5 and "± " in text


@pytest.mark.e2e
def test_demo_without_workdir_is_one_line_and_exit_2():
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  done = subprocess.run([sys.executable, "-m", "experiments.transfer_demo"], cwd=root,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 2 and "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1].startswith("error: --workdir is required")
