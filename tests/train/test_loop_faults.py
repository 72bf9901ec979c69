"""The fault battery: each fault injected for real into launch.py runs of LeNet-5 on mnist5k.

Signals go to a real training subprocess, checkpoint files are truncated or removed on disk, a
second real launch competes for the workdir, a real disk fills up (a tmpfs in a user+mount
namespace). Each test asserts what survives: no lost checkpoint, one ``error:`` line, the exit
code, and for interrupted runs a result bit-identical to the uninterrupted run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cnnjax import checkpoint
from tests.test_launch import ROOT, launch, tiny

pytestmark = pytest.mark.e2e  # each test runs launch.py

STEPS = ("--config.num_steps=60", "--config.checkpoint_every_steps=20")


def rows(workdir):
  """metrics.jsonl without the timing column (the only thing a rerun may change)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(l).items() if k != "train/images_per_sec"} for l in f]


def errors(stderr):
  return [l for l in stderr.splitlines() if l.startswith("error: ")]


def one_error(done, code):
  assert done.returncode == code, done.stderr[-3000:]
  assert "Traceback" not in done.stderr, done.stderr[-3000:]
  lines = errors(done.stderr)
  assert len(lines) == 1, done.stderr[-3000:]
  return lines[0]


def steps_in(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def read_state(workdir, step, ckpt_dir=None):
  """The whole saved train state of ``step`` as numpy arrays."""
  path = os.path.join(ckpt_dir or os.path.join(workdir, "checkpoints"), str(step), "state")
  ckpt = ocp.PyTreeCheckpointer()
  meta = ckpt.metadata(path).item_metadata.tree
  return ckpt.restore(path, args=ocp.args.PyTreeRestore(
      restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)))


def drop_chunks(state_dir, prefix):
  """Deletes the stored chunks of every array whose name starts with ``prefix`` from a
  checkpoint's OCDBT database: that part of the checkpoint is gone, the rest intact."""
  import tensorstore as ts  # pylint: disable=import-outside-toplevel
  kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{state_dir}/"}).result()
  for key in [k.decode() for k in kv.list().result()]:
    if key.startswith(prefix) and not key.endswith(".zarray"):
      kv.delete_range(ts.KvStore.KeyRange(key, key + "\0")).result()


def strict_json(path):
  """Parses ``path`` (JSON or JSON lines) refusing NaN/Infinity, as strict parsers do."""
  def refuse(token):
    raise ValueError(f"{path} holds {token}")
  with open(path) as f:
    text = f.read()
  parts = text.splitlines() if path.endswith(".jsonl") else [text]
  return [json.loads(p, parse_constant=refuse) for p in parts if p.strip()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir):
  """The uninterrupted 60-step run every interrupted one must equal."""
  workdir = tmp_path_factory.mktemp("straight")
  done = launch(*tiny(workdir, data_dir, *STEPS))
  assert done.returncode == 0, done.stderr[-2000:]
  for name in ("metrics.jsonl", "config.json"):
    strict_json(os.path.join(workdir, name))
  return workdir


def start(workdir, data_dir, *extra):
  return launch(*tiny(workdir, data_dir, *STEPS, *extra), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)


def wait_for_step(proc, workdir, step, timeout=300):
  """Waits until ``step`` is logged in metrics.jsonl (the run is then between steps)."""
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    if os.path.exists(path) and any(json.loads(l).get("step", 0) >= step
                                    for l in open(path) if l.strip()):
      return max(json.loads(l)["step"] for l in open(path) if l.strip())
    time.sleep(0.02)
  raise TimeoutError(f"step {step} never logged")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                                    signal.SIGUSR2], ids=lambda s: signal.Signals(s).name)
def test_signal_saves_at_that_step_and_the_rerun_is_bit_identical(tmp_path, data_dir, straight,
                                                                  signum):
  proc = start(tmp_path, data_dir)
  logged = wait_for_step(proc, tmp_path, 10)
  proc.send_signal(signum)
  if signum == signal.SIGINT:  # an impatient second Ctrl-C must not cost or tear the save
    time.sleep(0.05)
    proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 128 + signum, stderr[-2000:]
  assert "Traceback" not in stderr and not errors(stderr), stderr[-2000:]
  saved = steps_in(tmp_path)[-1]
  assert logged <= saved < 60  # the steps done before the signal are in the checkpoint
  assert f"stopped by {signal.Signals(signum).name} at step {saved}: checkpoint saved" in stderr
  assert "run the same command again to resume" in stderr

  resumed = launch(*tiny(tmp_path, data_dir, *STEPS))
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resuming from step {saved} " in resumed.stderr  # no step before it trained twice
  assert rows(tmp_path) == rows(straight)  # every logged loss and accuracy, bit for bit
  for name in ("metrics.jsonl", "config.json"):
    strict_json(os.path.join(tmp_path, name))


def test_a_second_launch_on_a_busy_workdir_fails_at_once_naming_the_holder(tmp_path, data_dir):
  first = start(tmp_path, data_dir, "--config.num_steps=100000",
                "--config.checkpoint_every_steps=10")
  try:
    wait_for_step(first, tmp_path, 10)
    second = launch(*tiny(tmp_path, data_dir, *STEPS))
    line = one_error(second, 2)
    assert f"pid {first.pid}" in line and "is in use by another run (host " in line, line
    assert first.poll() is None  # the holder runs on, untouched
  finally:
    first.kill()  # kill -9: the OS drops the lock with the process
    first.communicate()
  again = launch(*tiny(tmp_path, data_dir, "--config.num_steps=10",
                       "--config.checkpoint_every_steps=10"))  # takes the lock again at once
  assert again.returncode == 0, again.stderr[-2000:]


def test_damaged_checkpoints_fall_back_to_the_newest_intact_one(tmp_path, data_dir, straight):
  shutil.copytree(os.path.join(straight, "checkpoints"), os.path.join(tmp_path, "checkpoints"))
  assert steps_in(tmp_path) == [20, 40, 60]
  shutil.copy(os.path.join(straight, "config.json"), tmp_path)
  shutil.copy(os.path.join(straight, "metrics.jsonl"), tmp_path)
  data = os.path.join(tmp_path, "checkpoints", "60", "state", "ocdbt.process_0", "d")
  for name in os.listdir(data):  # the newest: every data file truncated
    with open(os.path.join(data, name), "r+b") as f:
      f.truncate(100)
  os.remove(os.path.join(tmp_path, "checkpoints", "40", "state", "manifest.ocdbt"))  # a file gone

  resumed = launch(*tiny(tmp_path, data_dir, *STEPS))
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  warnings = [l for l in resumed.stderr.splitlines() if l.startswith("warning: checkpoint step")]
  assert [w.split()[3] for w in warnings] == ["60", "40"], resumed.stderr[-2000:]
  assert "resuming from step 20 " in resumed.stderr
  assert rows(tmp_path) == rows(straight)  # steps 21-60 trained again, exactly as before
  assert sorted(os.listdir(tmp_path / "damaged_checkpoints")) == ["40", "60"]  # kept, not deleted


def test_no_restorable_checkpoint_is_one_error_naming_the_directory(tmp_path, data_dir):
  first = launch(*tiny(tmp_path, data_dir, "--config.num_steps=20",
                       "--config.checkpoint_every_steps=10"))
  assert first.returncode == 0, first.stderr[-2000:]
  for step in steps_in(tmp_path):
    os.remove(os.path.join(tmp_path, "checkpoints", str(step), "state", "manifest.ocdbt"))
  done = launch(*tiny(tmp_path, data_dir, "--config.num_steps=30",
                      "--config.checkpoint_every_steps=10"))
  line = one_error(done, 3)
  assert f"none of the checkpoints in {tmp_path}/checkpoints can be restored (step 20: " in line
  assert "metadata" in line and "nothing was moved" in line, line
  assert steps_in(tmp_path) == [10, 20]  # a fault that hits them all must not cost the run


def test_resume_or_eval_with_another_state_structure_is_one_line_and_keeps_config_json(
    tmp_path, data_dir):
  first = launch(*tiny(tmp_path, data_dir, "--config.num_steps=10",
                       "--config.checkpoint_every_steps=10"))
  assert first.returncode == 0, first.stderr[-2000:]
  before = (tmp_path / "config.json").read_bytes()
  clipped = launch(*tiny(tmp_path, data_dir, "--config.num_steps=20",
                         "--config.checkpoint_every_steps=10",
                         "--config.optimizer.grad_clip_norm=1.0"))
  line = one_error(clipped, 2)
  assert "checkpoint step 10" in line and "doesn't fit this config" in line, line
  assert "opt_state/" in line and "config.optimizer.grad_clip_norm (None there, 1.0 here)" in line
  evaluated = launch(*tiny(tmp_path, data_dir, "--config.optimizer.name=sgd"), "--mode=eval")
  line = one_error(evaluated, 2)
  assert "doesn't fit this config: opt_state/" in line, line
  assert "config.optimizer.name ('adam' there, 'sgd' here)" in line, line
  assert (tmp_path / "config.json").read_bytes() == before
  assert not (tmp_path / "eval.json").exists()


def _nan_params(workdir, step):
  """Rewrites checkpoint ``step`` with NaN parameters (as an old, unguarded run could leave)."""
  mgr = checkpoint.manager(os.path.join(workdir, "checkpoints"), keep=5)
  items = {k: ocp.args.JsonRestore() for k in ("data", "window")}
  restored = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                        **items))
  state = restored["state"]
  state["params"] = jax.tree.map(lambda p: np.full(p.shape, np.nan, p.dtype), state["params"])
  mgr.delete(step)
  checkpoint.save(mgr, step, state, restored["data"], restored["window"])
  mgr.wait_until_finished()
  mgr.close()


def test_eval_of_a_nan_checkpoint_is_an_error_not_a_perfect_score(tmp_path, data_dir):
  first = launch(*tiny(tmp_path, data_dir, "--config.num_steps=10",
                       "--config.checkpoint_every_steps=10"))
  assert first.returncode == 0, first.stderr[-2000:]
  _nan_params(tmp_path, 10)
  done = launch(*tiny(tmp_path, data_dir, "--config.num_steps=10"), "--mode=eval")
  line = one_error(done, 3)
  assert "step 10: FloatingPointError: it holds non-finite values" in line, line
  assert "top1=1.0" not in done.stdout and not (tmp_path / "eval.json").exists()


def test_a_diverging_run_stops_before_saving_a_non_finite_state(tmp_path, data_dir):
  args = ("--config.optimizer.name=sgd", "--config.optimizer.learning_rate=1e38",
          "--config.schedule.name=constant", "--config.schedule.warmup_epochs=0",
          "--config.log_every_steps=1", "--config.checkpoint_every_steps=1",
          "--config.keep_checkpoints=100", "--config.num_steps=50")
  done = launch(*tiny(tmp_path, data_dir), *args)
  line = one_error(done, 3)
  assert "training diverged at step" in line, line
  saved = steps_in(tmp_path)
  assert f"the newest checkpoint, step {saved[-1]} in {tmp_path}/checkpoints, is finite" in line
  for step in saved:  # every checkpoint left behind is finite
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(read_state(tmp_path, step))
               if np.issubdtype(x.dtype, np.floating)), step
  strict_json(os.path.join(tmp_path, "metrics.jsonl"))


def test_resume_sets_aside_a_non_finite_checkpoint(tmp_path, data_dir, straight):
  first = launch(*tiny(tmp_path, data_dir, "--config.num_steps=40",
                       "--config.checkpoint_every_steps=20"))
  assert first.returncode == 0, first.stderr[-2000:]
  _nan_params(tmp_path, 40)
  resumed = launch(*tiny(tmp_path, data_dir, *STEPS))
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "warning: checkpoint step 40 can't be restored" in resumed.stderr
  assert "non-finite" in resumed.stderr and "resuming from step 20 " in resumed.stderr
  assert rows(tmp_path) == rows(straight)


def test_init_from_reads_only_params_and_batch_stats(tmp_path, data_dir):
  source = tmp_path / "source"
  first = launch(*tiny(source, data_dir, "--config.num_steps=10",
                       "--config.checkpoint_every_steps=10"))
  assert first.returncode == 0, first.stderr[-2000:]
  drop_chunks(source / "checkpoints" / "10" / "state", "opt_state.")  # Adam's mu, nu, count
  with pytest.raises(ValueError, match=r"chunk .* stored at \"opt_state"):
    read_state(source, 10)  # restoring the whole state now fails
  done = launch(*tiny(tmp_path / "target", data_dir, "--config.num_steps=10",
                      f"--config.init_from={source}"))
  assert done.returncode == 0, done.stderr[-2000:]


def _unshare_available():
  probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                         capture_output=True, check=False)
  return probe.returncode == 0


@pytest.mark.skipif(not shutil.which("unshare") or not _unshare_available(),
                    reason="needs user+mount namespaces (unshare) for a real full disk")
def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_older_checkpoints(tmp_path,
                                                                                data_dir):
  workdir, kept = tmp_path / "run", tmp_path / "kept"
  ckpts = workdir / "checkpoints"
  ckpts.mkdir(parents=True)
  # Room for one LeNet-5 checkpoint (about 0.8 MB) but not two: the save at step 20 fails.
  args = " ".join(tiny(workdir, data_dir, "--config.num_steps=100",
                       "--config.checkpoint_every_steps=10", "--config.keep_checkpoints=5"))
  script = (f"mount -t tmpfs -o size=1200k tmpfs {ckpts} && cd {ROOT} && "
            f"{sys.executable} launch.py {args}; rc=$?; cp -r {ckpts} {kept}; exit $rc")
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                        env=env, capture_output=True, text=True, timeout=600, check=False)
  line = one_error(done, 3)
  assert "saving the checkpoint of step 20" in line and "No space left on device" in line, line
  assert "intact up to step 10" in line, line
  assert sorted(int(s) for s in os.listdir(kept) if s.isdigit()) == [10]
  state = read_state(tmp_path, 10, ckpt_dir=kept)
  assert int(state["step"]) == 10
