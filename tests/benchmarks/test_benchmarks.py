"""The benchmark harness: its PyTorch models are cnnjax's, and it measures what it says."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import cases, cli, jax_bench, launch_checks, pipeline_bench
from cnnjax import models
from cnnjax.transfer import torch_layout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cases_parse_defaults_sizes_and_errors():
  assert cases.parse("resnet18@32") == cases.Case("resnet18", 64, 32, 3, 10)
  assert cases.parse("lenet5", batch=8).batch == 8
  assert cases.parse("resnet34@64") == cases.Case("resnet34", 32, 64, 3, 1000)
  assert cases.parse("vgg11") == cases.Case("vgg11", 32, 224, 3, 1000)
  with pytest.raises(cases.CaseError, match="bad input size"):
    cases.parse("resnet18@x")
  with pytest.raises(cases.CaseError, match="float32, bfloat16"):
    cases.parse("lenet5", dtype="fp16")


@pytest.mark.parametrize("name,size,flatten", [
    ("lenet5", 28, {"fc1": (16, 5, 5)}),
    ("resnet20", 32, None),
])
def test_torch_definitions_give_cnnjax_logits(name, size, flatten):
  torch = pytest.importorskip("torch")
  from benchmarks import torch_bench  # pylint: disable=import-outside-toplevel
  channels = 1 if name == "lenet5" else 3
  net = torch_bench.build(name, 10, channels).eval()
  gen = torch.Generator().manual_seed(0)
  for module in net.modules():  # non-trivial BatchNorm statistics
    if isinstance(module, torch.nn.BatchNorm2d):
      module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
      module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
  variables = torch_layout.to_flax(net.state_dict(), torch_layout.dotted, flatten)
  model = models.create(name, num_classes=10)
  reference = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels))))
  assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, reference)
  x = np.random.default_rng(0).normal(size=(2, size, size, channels))
  ours = model.apply(variables, jnp.asarray(x, jnp.float32), train=False)
  with torch.no_grad():
    theirs = net(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.e2e
def test_jax_measurement_reports_throughput_flops_and_compile_time():
  r = jax_bench.measure(cases.parse("lenet5", batch=16), min_time=0, min_steps=3, warmup=1)
  assert r["train"]["steps"] >= 3 and r["train"]["images_per_s"] > 0
  assert r["train"]["step_ms_p10"] <= r["train"]["step_ms_median"] <= r["train"]["step_ms_p90"]
  assert r["compile_s"] > 0 and r["inference"]["images_per_s"] > 0
  # LeNet-5's multiply-adds per image: forward 0.83 MFLOP (convs 0.72, dense 0.12), backward
  # 1.43 (no input gradient for conv1): 2.26 MFLOP plus elementwise work, counted globally.
  per_image = r["train_flops_per_step"] / 16
  assert 2.26e6 < per_image < 2.8e6
  assert 0 < r["mfu"] < 1 and r["devices"] == jax.device_count()


def test_pipeline_measurement_counts_images():
  data = pipeline_bench.synthetic((8, 8, 3), 64)
  r = pipeline_bench.measure(data, {"global_batch": 16, "max_shift": 1, "flip": True},
                             min_time=0)
  assert r["batches"] >= 3 and r["images_per_s"] > 0
  variable = pipeline_bench.synthetic((0, 0, 3), 8, crop=16, sizes=(20, 30))
  assert pipeline_bench.measure(variable, {"global_batch": 4}, min_time=0)["images_per_s"] > 0


def run(*args):
  return subprocess.run([sys.executable, "-m", "benchmarks.run", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_side_by_side_command_end_to_end(tmp_path):
  pytest.importorskip("torch")
  out = tmp_path / "bench.json"
  done = run("--models=lenet5", "--batch=16", "--min_time=0", "--min_steps=2", "--nopipeline",
             f"--out={out}", f"--torch_python={sys.executable}")
  assert done.returncode == 0, done.stderr[-2000:]
  row = next(l for l in done.stdout.splitlines() if l.startswith("| lenet5@28"))
  assert "×" in row and "—" not in row
  assert f"{sys.executable} runs PyTorch" in done.stdout and "jax 0." in done.stdout
  results = json.load(open(out))["lenet5@28"]
  assert set(results) == {"jax", "torch:contiguous", "torch:channels_last"}
  assert all(r["train"]["images_per_s"] > 0 for r in results.values())


@pytest.mark.e2e
def test_jax_side_needs_only_jax_flax_optax():
  """As on a bare accelerator image: the data, config and PyTorch packages can't be imported."""
  blocked = ("grain", "tensorflow_datasets", "ml_collections", "tensorflow", "torch", "PIL",
             "orbax", "array_record", "mlxtend", "sklearn")
  code = ("import json, sys\n"
          f"for m in {blocked!r}: sys.modules[m] = None\n"
          "from benchmarks import cases, jax_bench, run\n"
          "r = jax_bench.measure(cases.parse('lenet5', batch=8), min_time=0, min_steps=2, "
          "inference=False)\n"
          "print(json.dumps(r))\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert result["train"]["images_per_s"] > 0


@pytest.mark.parametrize("script,args,message", [
    ("run", ["--models=lenet6"], "unknown model 'lenet6'"),
    ("run", ["--models=resnet18@x"], "bad input size"),
    ("run", ["--frameworks=mxnet"], "unknown framework 'mxnet'"),
    ("run", ["--dtype=fp16"], "unknown dtype 'fp16'"),
    ("run", ["stray"], "unexpected arguments 'stray'"),
    ("run", ["--torch_python=/no/such/python"], "--torch_python='/no/such/python' is not an"),
    ("run", ["--models=lenet5", "--frameworks=jax", "--max_batch", "--nopipeline"],
     "needs a device that reports its memory"),
    ("conv_bench", ["--model=lenet6"], "unknown model 'lenet6'"),
    ("accelerator", ["--parts=training,gpu"], "unknown part 'gpu'; choose from throughput,"),
    ("accelerator", ["--sweep_runs_per_device=1,0"], "--sweep_runs_per_device=1,0 must be"),
    ("profile_step", ["--model=lenet5@x"], "bad input size"),
    ("profile_step", ["--model=lenet5", "--batch=12"], "not divisible by the 8 devices"),
])
@pytest.mark.e2e
def test_bad_input_is_one_line_and_exit_2(tmp_path, script, args, message):
  done = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", *args,
                         *([f"--out={tmp_path / 'b.json'}"] if script == "run" else [])],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 2, done.stderr[-2000:]
  assert message in done.stderr
  if script != "run" or "--max_batch" not in args:
    assert done.stderr.strip().count("\n") == 0


@pytest.mark.e2e
def test_profile_lists_xla_ops_by_time():
  done = subprocess.run([sys.executable, "-m", "benchmarks.profile_step", "--model=lenet5",
                         "--batch=8", "--steps=2", "--top=5"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  lines = done.stdout.strip().splitlines()
  assert lines[0].startswith("lenet5@28, batch 8: ms per step in XLA's ops")
  ops = [line.split()[-1] for line in lines[1:]]
  assert len(ops) == 5 and any(kind in op for op in ops for kind in ("fusion", "convolution", "ffi_call"))
  times = [float(line.split()[0]) for line in lines[1:]]
  assert times == sorted(times, reverse=True) and times[0] > 0


@pytest.mark.e2e
def test_loop_cost_times_the_loops_path_against_a_fixed_batch():
  done = subprocess.run([sys.executable, "-m", "benchmarks.loop_cost", "--steps_per_call=4",
                         "--pairs=2", "--steps=8"], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  line = done.stdout.strip().splitlines()[-1]
  assert line.startswith("lenet5, batch 128, steps_per_call=4: fixed batch "), line
  pairs = [float(r) for r in re.search(r"\(pairs: ([\d. ]+)\)", line).group(1).split()]
  assert len(pairs) == 2 and all(r > 0 for r in pairs)
  assert re.search(r"the harness's step [\d,]+ img/s, the loop's path over it \d\.\d{3}$", line)


@pytest.mark.e2e
def test_conv_bench_finds_every_conv_and_times_each_pass_both_ways():
  from benchmarks import conv_bench  # pylint: disable=import-outside-toplevel
  convs = conv_bench.model_convs("lenet5", 2, None)
  assert [(x, w, dict(p)["padding"]) for x, w, p in convs] == [
      ((2, 28, 28, 1), (5, 5, 1, 6), ((2, 2), (2, 2))),
      ((2, 14, 14, 6), (5, 5, 6, 16), ((0, 0), (0, 0)))]
  times = conv_bench.passes((2, 4, 4, 8), (3, 3, 8, 4), dict(convs[1][2]), repeats=2)
  assert list(times) == ["forward", "input grad", "kernel grad"]
  assert all(a > 0 and b > 0 for a, b in times.values())


@pytest.mark.e2e
def test_largest_batch_is_the_biggest_power_of_two_that_fits():
  case = cases.parse("lenet5", batch=8)
  need = {b: jax_bench.compiled_bytes(cases.parse("lenet5", batch=b)) for b in (8, 16, 32, 64)}
  assert need[8] < need[16] < need[32] < need[64]
  limit = (need[32] + need[64]) / 2 / 0.9  # 32 fits in 90% of it, 64 does not
  assert jax_bench.largest_batch(case, limit, max_batch=64).batch == 32
  assert jax_bench.largest_batch(case, limit, max_batch=64, start=16).batch == 32
  with pytest.raises(cases.CaseError, match="needs more than"):
    jax_bench.largest_batch(case, need[8] / 2)
  if jax.devices()[0].platform == "cpu":
    with pytest.raises(cases.CaseError, match="GPU or TPU"):
      jax_bench.largest_batch(case)


def test_failed_measurements_are_null_so_the_file_is_strict_json():
  nan, inf = float("nan"), float("inf")
  out = cli.finite_or_null({"train": {"images_per_s": nan, "mfu": inf, "batch": 8},
                            "times": (1.5, -inf), "name": "lenet5"})
  assert out == {"train": {"images_per_s": None, "mfu": None, "batch": 8},
                 "times": [1.5, None], "name": "lenet5"}
  json.dumps(out, allow_nan=False)


@pytest.mark.e2e
def test_accelerator_smoke_writes_every_part(tmp_path):
  """The issue's acceptance: ``benchmarks.accelerator --smoke`` checks this host (CPU here) and
  writes its tables; every number comes from the command itself."""
  out = tmp_path / "acc.json"
  done = subprocess.run([sys.executable, "-m", "benchmarks.accelerator", "--smoke",
                         f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
  text = done.stdout
  for title in ("## 1. Train-step throughput", "## 2–3. The main command",
                "## 4. A smoke sweep", "## 5. The input pipeline alone"):
    assert title in text
  rows = {l.split("|")[1].strip(): l for l in text.splitlines() if l.startswith("| ")}
  final = re.search(r"final eval/loss=[\d.]+ eval/top1=[\d.]+ eval/top5=[\d.]+", rows["run 1"])
  assert final and final.group(0) in rows["run 2"] and final.group(0) in rows["kill -9, rerun"]
  assert "run 1: yes" in rows["run 2"] and "run 1: yes" in rows["kill -9, rerun"]
  assert "kill -9: after the checkpoint of step 8" in text
  results = json.load(open(out))
  assert results["platform"] == "cpu" and results["smoke"] is True
  assert all(results["training"]["identical"].values())
  assert [s["runs"] for s in results["sweep"]["settings"]] == [2]  # max and avg pooling, 1 seed
  assert results["sweep"]["settings"][0]["runs_per_minute"] > 0
  throughput = results["throughput"]
  assert set(throughput) == {"lenet5@28 steps_per_call=1", "lenet5@28 steps_per_call=4"}
  assert all(r["train"]["images_per_s"] > 0 and 0 < r["mfu"] < 1 for r in throughput.values())
  assert len(results["pipeline"]) == 4 and all(r["images_per_s"] > 0
                                               for r in results["pipeline"].values())
  for suffix in ("", "_runs", "_sweep", "_pipeline"):
    table = (tmp_path / f"acc{suffix}.csv").read_text().splitlines()
    assert len(table) >= 2, suffix


def test_first_checkpoint_is_the_lowest_finished_step(tmp_path):
  assert launch_checks.first_checkpoint(str(tmp_path)) is None
  (tmp_path / "checkpoints" / "16.orbax-checkpoint-tmp-3").mkdir(parents=True)
  assert launch_checks.first_checkpoint(str(tmp_path)) is None  # still being written
  for step in ("24", "8"):
    (tmp_path / "checkpoints" / step).mkdir()
  assert launch_checks.first_checkpoint(str(tmp_path)) == 8


def test_runs_are_identical_only_with_the_same_final_line_and_metrics():
  def outcome(final, loss, rate=1000.0):
    return launch_checks.Outcome(exit=0, wall_s=1.0, final=final, images_per_s=rate,
                                 compile_s=0.5, metrics=[{"step": 8, "train/loss": loss}])
  a = outcome("final eval/top1=0.9800", 0.25)
  assert a.same_as(outcome("final eval/top1=0.9800", 0.25, rate=2000.0))  # speed may differ
  assert not a.same_as(outcome("final eval/top1=0.9800", 0.25000001))  # the last bit counts
  assert not a.same_as(outcome("final eval/top1=0.9790", 0.25))
  assert not outcome(None, 0.25).same_as(outcome(None, 0.25))  # a run with no final line
  assert "metrics" not in a.summary() and a.summary()["final"] == "final eval/top1=0.9800"


@pytest.mark.parametrize("gpu", [False, True])
def test_training_checks_compare_the_right_runs(monkeypatch, tmp_path, gpu):
  """The GPU form, without a GPU: which runs are made with deterministic ops, and which run the
  kill -9 + resume is compared with (launch.py's processes replaced by records)."""
  started = []

  def start(workdir, args, env):
    started.append((os.path.basename(workdir), env.get("XLA_FLAGS", "")))
    return launch_checks.Started(None, workdir, 0.0)

  def finish(run):
    name = os.path.basename(run.workdir)
    final = "final b" if name in ("det1", "det2", "killed") and gpu else "final a"
    return launch_checks.Outcome(0, 1.0, final, 1.0, 0.1, [])

  monkeypatch.setattr(launch_checks, "start", start)
  monkeypatch.setattr(launch_checks, "finish", finish)
  monkeypatch.setattr(launch_checks, "kill_after_first_checkpoint",
                      lambda run: {"killed_after_step": 8, "killed_while_running": True})
  r = launch_checks.training(str(tmp_path), ("--config.num_steps=4",), gpu=gpu, concurrent=False)
  flagged = {name for name, flags in started if launch_checks.DETERMINISTIC in flags}
  if gpu:
    assert [n for n, _ in started] == ["run1", "killed", "run2", "det1", "det2", "killed"]
    assert flagged == {"det1", "det2", "killed"}
    assert r["compared_with"]["kill -9, rerun"] == "deterministic 1"
    assert r["identical"] == {"run 2": True, "kill -9, rerun": True, "deterministic 2": True}
  else:
    assert [n for n, _ in started] == ["run1", "killed", "run2", "killed"] and not flagged
    assert r["identical"] == {"run 2": True, "kill -9, rerun": True}
  assert r["kill"]["killed_after_step"] == 8
