"""launch.py as a user runs it: a tiny experiment end to end, kill -9 and resume, bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=experiments/lenet_mnist.py"

pytestmark = pytest.mark.e2e  # each test runs launch.py as a subprocess


def launch(*args, devices=1, cache=None, **popen):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "CNNJAX_CACHE": str(cache or os.environ.get("CNNJAX_CACHE", "/tmp/cnnjax-test-cache"))}
  cmd = [sys.executable, "launch.py", *args]
  if popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, **popen)
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def tiny(workdir, data_dir, *extra):
  return (CONFIG, f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.log_every_steps=10", "--config.eval_every_epochs=0", *extra)


def final_eval(workdir):
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return [r for r in rows if "eval/loss" in r][-1]


@pytest.mark.jax_lines
def test_kill_9_then_rerun_ends_bit_identical(tmp_path, data_dir):
  args = ("--config.num_steps=150", "--config.checkpoint_every_steps=10")
  straight = tmp_path / "straight"
  done = launch(*tiny(straight, data_dir, *args))
  assert done.returncode == 0, done.stderr[-2000:]

  killed = tmp_path / "killed"
  proc = launch(*tiny(killed, data_dir, *args), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (killed / "checkpoints" / "10").exists() and time.time() < deadline:
    assert proc.poll() is None, "the run ended before its first checkpoint"
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  steps = sorted(int(p) for p in os.listdir(killed / "checkpoints") if p.isdigit())
  assert steps and steps[-1] < 150, f"killed too late: {steps}"

  resumed = launch(*tiny(killed, data_dir, *args))
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  a, b = final_eval(straight), final_eval(killed)
  assert a == b  # loss and accuracies exactly equal, not just close
  rows = [json.loads(l)["step"] for l in open(killed / "metrics.jsonl")]
  assert rows == sorted(rows), "a resumed run must not duplicate logged steps"


def test_eval_mode_and_rerun_of_a_finished_run(tmp_path, data_dir):
  workdir = tmp_path / "run"
  first = launch(*tiny(workdir, data_dir, "--config.num_steps=20"))
  assert first.returncode == 0, first.stderr[-2000:]
  assert "final eval/loss=" in first.stdout
  evaluated = launch(*tiny(workdir, data_dir, "--config.num_steps=20"), "--mode=eval")
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  result = json.load(open(workdir / "eval.json"))
  assert result["step"] == 20
  assert result["eval/top1"] == pytest.approx(final_eval(workdir)["eval/top1"])
  assert np.isfinite(result["eval/loss"])


def test_second_launch_loads_its_steps_from_the_compilation_cache(tmp_path, data_dir):
  cache = tmp_path / "cache"
  runs = [launch(*tiny(tmp_path / f"run{i}", data_dir, "--config.num_steps=5"), cache=cache)
          for i in range(2)]
  assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
  hits = [int(re.search(r"(\d+) of \d+ cacheable programs loaded from the cache",
                        r.stdout).group(1)) for r in runs]
  assert hits[0] == 0 and hits[1] >= 2  # the train and eval steps at least
  assert os.listdir(cache)


@pytest.mark.jax_lines
def test_runs_data_parallel_on_8_devices(tmp_path, data_dir):
  done = launch(*tiny(tmp_path, data_dir, "--config.num_steps=10"), devices=8)
  assert done.returncode == 0, done.stderr[-2000:]


BAD_INPUT = [
    ((CONFIG, "--config.model=lenet6"), r"unknown model 'lenet6'. Did you mean 'lenet5'"),
    ((CONFIG, "--config.dataset=mnist5kk"), r"unknown dataset 'mnist5kk'. Did you mean 'mnist5k'"),
    ((CONFIG, "--config.batch_size=lots"), r"--config.batch_size=lots"),
    ((CONFIG, "--config.batchsize=64"), r"unknown config key 'config.batchsize'. Did you mean "
                                         r"'batch_size'"),
    ((CONFIG, "--config.batch_size=100"), r"batch_size=100 is not divisible by the 8 devices"),
    (("--config=experiments/nope.py",), r"config file 'experiments/nope.py' does not exist"),
    ((CONFIG, "--config.optimizer.name=adagrad"), r"unknown optimizer 'adagrad'"),
    ((CONFIG, "--config.model_options.activation=swish"), r"unknown activation 'swish'"),
    ((CONFIG, "--mode=fit"), r"--mode=fit"),
    ((CONFIG, "--config.seed=-1"),
     r"config\.seed must be an integer in \[0, 2\*\*63\), got -1\.$"),
    ((CONFIG, "--config.schedule.warmup_epochs=-1"),
     r"config\.schedule\.warmup_epochs must be >= 0, got -1\.0\.$"),
    ((CONFIG, "--config.data.num_threads=0"),
     r"config\.data\.num_threads must be an integer >= 1, got 0\.$"),
    ((CONFIG, "--config.data.max_shift=28"),
     r"config\.data\.max_shift must be < 28 \(the training images are 28x28\), got 28\.$"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[m[:30] for _, m in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(tmp_path, data_dir, args, message):
  done = launch(*args, f"--workdir={tmp_path}", f"--config.data.data_dir={data_dir}", devices=8)
  assert done.returncode == 2, done.stderr[-2000:]
  errors = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, done.stderr[-2000:]
  assert "Traceback" not in done.stderr
  import re
  assert re.search(message, errors[0]), errors[0]


def test_unwritable_workdir(tmp_path, data_dir):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  done = launch(CONFIG, f"--workdir={blocker}/run", f"--config.data.data_dir={data_dir}")
  assert done.returncode == 2 and "Traceback" not in done.stderr
  assert f"error: workdir '{blocker}/run' can't be written" in done.stderr
