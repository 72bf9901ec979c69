r"""One command that checks a host with any JAX backend, and writes what it found.

  python -m benchmarks.accelerator                 # on the accelerator host (minutes)
  python -m benchmarks.accelerator --smoke         # small sizes on any host, CPU included (CI)

Five parts, each a Markdown table on stdout, every number in them measured by this command:
  1. train-step throughput and MFU (FLOPs from XLA's cost analysis of the compiled step, over the
     device's peak: the vendor's dense figure, or on CPU a large matmul measured here) for
     ResNet-50@224 at the largest batch that fits (GPU/TPU), ResNet-20@32 and LeNet-5@28, one
     step per call and ``steps_per_call`` steps per call; the compute dtype is the backend's
     default (``cnnjax.platforms``: bfloat16 on GPU/TPU, float32 on CPU);
  2. the README's main command twice (final line, images/s, compile time; identical?), and on a
     GPU twice with XLA's deterministic ops;
  3. a run killed with SIGKILL after its first checkpoint, rerun: equal to the uninterrupted run?
  4. a smoke sweep with ``--sweep_runs_per_device`` 1, 4 and 8 (CPU: that many workers): runs per
     minute;
  5. the input pipeline alone on this host's cores: in-memory 32×32 images, and JPEG decoding +
     random-resized crop to 224 (+ the flip draws; the flip itself is applied in the train step)
     from synthetic JPEGs written into a temporary directory, with 1 reader thread and with one
     per core.
The training runs (2–4) are child processes and go first: this process touches no device
before part 1. Everything is written to ``--out`` (JSON) and the tables as CSV beside it
(``NAME.csv``, ``NAME_runs.csv``, ...).
"""

from __future__ import annotations

if __name__ == "__main__":  # first: restarts once with huge pages for XLA's buffers, as launch.py
  from cnnjax import hugepages
  hugepages.reexec()

import os  # pylint: disable=wrong-import-position
import sys
import tempfile

from absl import flags

from benchmarks import cases, cli, launch_checks, results_io
from cnnjax import files, platforms
from cnnjax.sweep import env as sweep_env

FLAGS = flags.FLAGS
PARTS = ("throughput", "training", "sweep", "pipeline")
flags.DEFINE_boolean("smoke", False, "Small sizes and short runs (about a minute on 2 CPU cores).")
flags.DEFINE_list("parts", list(PARTS), f"Which parts to run: any of {', '.join(PARTS)} "
                  "(training is parts 2 and 3).")
flags.DEFINE_list("sweep_runs_per_device", ["1", "4", "8"], "Part 4's settings (--smoke: 2).")
flags.DEFINE_float("min_time", 5.0, "Seconds of timed calls per throughput measurement.")
flags.DEFINE_string("out", "benchmarks/results/accelerator.json",
                    "Where to write the results (JSON; the printed tables as CSV beside it).")

MODELS = ("resnet50@224", "resnet20@32", "lenet5")
SMOKE_MODELS = {"lenet5": 8}  # case → batch
SMOKE_STEPS = ("--config.num_steps=40", "--config.log_every_steps=8",
               "--config.checkpoint_every_steps=8", "--config.eval_every_epochs=0")
SWEEP = "experiments/ablations.py:activation,smoke"
# --smoke's sweep: 2 runs of 4 steps (the pooling ablation, one seed), written as an experiment
# file into the temporary directory
SMOKE_SWEEP = ('''"""benchmarks.accelerator --smoke's sweep: the pooling ablation, one seed, 4 steps."""
from cnnjax.sweep import Sweep
from experiments import ablations


def get_config(arg=None):
  c = ablations.get_config("pooling,smoke")
  c.num_steps, c.log_every_steps, c.checkpoint_every_steps = 4, 2, 4
  return c


def get_sweep(arg=None):
  return Sweep({"model_options.pool": ["max", "avg"]}, seeds=(0,))
''')
TABLES = ("", "_runs", "_sweep", "_pipeline")  # CSV suffixes, in the order the tables print


def _fmt(value, spec: str = ",.0f") -> str:
  return "—" if value is None else format(value, spec)


def _throughput(platform: str) -> tuple[dict, list[str]]:
  import jax  # pylint: disable=import-outside-toplevel  # only now: the runs above hold the device
  from benchmarks import hardware, jax_bench  # pylint: disable=import-outside-toplevel
  dtype = platforms.compute_dtype(platform)
  k = 4 if FLAGS.smoke else platforms.ACCELERATOR_STEPS_PER_CALL
  timing = (dict(min_time=0.0, min_steps=2, warmup=1) if FLAGS.smoke
            else dict(min_time=FLAGS.min_time, min_steps=5))
  results, lines = {}, [
      "| model @ input | dtype | batch | steps/call | img/s | ms per call | compile s | "
      "GFLOP per step | MFU |", "|" + "---|" * 9]
  for text in (SMOKE_MODELS if FLAGS.smoke else MODELS):
    case = cases.parse(text, batch=SMOKE_MODELS.get(text) if FLAGS.smoke else None, dtype=dtype)
    if case.model == "resnet50" and platform != "cpu":  # from 128 per device: fewer compiles
      case = jax_bench.largest_batch(case, start=128 * jax.device_count())
    flops = None
    for steps in (1, k):
      r = jax_bench.measure(case, steps_per_call=steps, inference=False,
                            flops_per_step=flops, **timing)
      flops = r["train_flops_per_step"]
      results[f"{case.label} steps_per_call={steps}"] = r
      lines.append(f"| {case.label} | {dtype} | {case.batch} | {steps} | "
                   f"{_fmt(r['train']['images_per_s'])} | "
                   f"{_fmt(r['train']['step_ms_median'], '.2f')} | {_fmt(r['compile_s'], '.1f')} | "
                   f"{_fmt(flops and flops / 1e9, '.2f')} | {_fmt(r.get('mfu'), '.1%')} |")
  peak, source = hardware.peak_flops(dtype)
  lines.append(f"\nPeak of one device, {dtype}: {peak / 1e12:,.2f} TFLOP/s ({source}); "
               f"{hardware.device_name()}, {results[next(iter(results))]['version']}.")
  return results, lines


def _yes(flag: bool) -> str:
  return "yes" if flag else "NO"


def _training(tmp: str, platform: str) -> tuple[dict, list[str]]:
  gpu = platform == "gpu"
  r = launch_checks.training(tmp, SMOKE_STEPS if FLAGS.smoke else (), gpu=gpu,
                             concurrent=platform == "cpu" and FLAGS.smoke,
                             fresh_cache=not FLAGS.smoke)
  lines = ["| run | XLA_FLAGS | final line | img/s (median) | compile s | wall s | identical to |",
           "|" + "---|" * 7]
  for name, run in r["runs"].items():
    flagged = name.startswith("deterministic") or (gpu and name.startswith("kill"))
    same = r["identical"].get(name)
    against = f"{r['compared_with'][name]}: {_yes(same)}" if name in r["identical"] else "—"
    lines.append(f"| {name} | {launch_checks.DETERMINISTIC if flagged else '—'} | "
                 f"{run['final'] or 'exit ' + str(run['exit']) + ': ' + str(run['error'])} | "
                 f"{_fmt(run['images_per_s'])} | {_fmt(run['compile_s'], '.1f')} | "
                 f"{_fmt(run['wall_s'], '.1f')} | {against} |")
  k = r["kill"]
  when = (f"after the checkpoint of step {k['killed_after_step']}" if k["killed_while_running"]
          else "NOT DONE: the run ended before its first checkpoint")
  command = " ".join([*launch_checks.MAIN, *r["args"]])
  lines.append(f"\nkill -9: {when}; `python {command}`"
               + ("" if gpu else "; CPU runs have no deterministic-ops flag"))
  return r, lines


def _sweep(tmp: str, platform: str) -> tuple[dict, list[str]]:
  experiment = SWEEP
  if FLAGS.smoke:
    os.makedirs(tmp, exist_ok=True)
    experiment = os.path.join(tmp, "smoke_sweep.py")
    files.write_atomic(experiment, SMOKE_SWEEP)
  settings = [2] if FLAGS.smoke else [int(v) for v in FLAGS.sweep_runs_per_device]
  gpu = platform == "gpu"
  what = "runs per device" if gpu else "workers (CPU: the cores split between them)"
  lines = [f"| {what} | runs | wall s | runs per minute | exit |", "|---|---|---|---|---|"]
  results = []
  for n in settings:
    r = launch_checks.sweep(os.path.join(tmp, f"sweep{n}"), experiment, per_device=n, gpu=gpu)
    results.append(r)
    lines.append(f"| {n} | {r['runs']} | {r['wall_s']:.1f} | {_fmt(r['runs_per_minute'], '.1f')} "
                 f"| {r['exit']}{': ' + r['error'] if r['error'] else ''} |")
  lines.append(f"\n`python launch.py --config={experiment} --sweep`"
               + (" (a 2-run sweep this command writes)" if FLAGS.smoke else ""))
  return {"experiment": experiment, "settings": results}, lines


def _pipeline(tmp: str) -> tuple[dict, list[str]]:
  from benchmarks import pipeline_bench  # pylint: disable=import-outside-toplevel
  cores = len(os.sched_getaffinity(0))
  n_jpeg = 32 if FLAGS.smoke else 512
  streams = {
      "in-memory 32×32×3, shift 4 + flip, batch 128": (
          pipeline_bench.synthetic((32, 32, 3), 2_000 if FLAGS.smoke else 20_000),
          {"global_batch": 128, "max_shift": 4, "flip": True}),
      f"{n_jpeg} JPEGs ~400×400: decode + random-resized crop 224 + flip, batch 32": (
          pipeline_bench.write_jpegs(tmp, n_jpeg), {"global_batch": 32, "flip": True}),
  }
  lines = ["| stream | reader threads | img/s | img/s per thread |", "|---|---|---|---|"]
  results = {}
  for name, (dataset, options) in streams.items():
    for threads in sorted({1, cores}):
      r = pipeline_bench.measure(dataset, options, num_threads=threads,
                                 min_time=0.5 if FLAGS.smoke else FLAGS.min_time)
      results[f"{name}, {threads} threads"] = r
      lines.append(f"| {name} | {threads} | {r['images_per_s']:,.0f} | "
                   f"{r['images_per_s'] / threads:,.0f} |")
  lines.append(f"\n{cores} cores available to this process.")
  return results, lines


def main(argv):
  cli.start(argv)
  bad = [p for p in FLAGS.parts if p not in PARTS]
  if bad:
    cli.fail(f"unknown part {bad[0]!r}; choose from {', '.join(PARTS)}.")
  try:
    settings = [int(v) for v in FLAGS.sweep_runs_per_device]
  except ValueError:
    settings = [0]
  if min(settings, default=0) < 1:
    cli.fail(f"--sweep_runs_per_device={','.join(FLAGS.sweep_runs_per_device)} must be "
             "integers >= 1.")
  with cli.user_errors():
    platform, _ = sweep_env.detect()  # without initialising any device
  results, lines = {"platform": platform, "smoke": FLAGS.smoke}, []
  sections = []
  with tempfile.TemporaryDirectory(prefix="cnnjax_accelerator_") as tmp:
    # the child processes first: this process holds no device until part 1
    for part, title, fn in (
        ("training", "2–3. The main command, twice, and kill -9 + resume", _training),
        ("sweep", "4. A smoke sweep sharing the devices", _sweep),
        ("pipeline", "5. The input pipeline alone", lambda t, p: _pipeline(t)),
        ("throughput", "1. Train-step throughput", lambda t, p: _throughput(p))):
      if part in FLAGS.parts:
        print(f"{title} ...", file=sys.stderr, flush=True)
        results[part], table = fn(os.path.join(tmp, part), platform)
        sections.append((PARTS.index(part), title, table))
  for _, title, table in sorted(sections):
    lines += [f"\n## {title}\n", *table]
  print("\n".join(lines))
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  files.write_json(FLAGS.out, cli.finite_or_null(results), indent=1)
  written = results_io.write_tables(FLAGS.out, lines, [TABLES[i] for i, _, _ in sorted(sections)])
  print(f"\nwrote {', '.join([os.path.abspath(FLAGS.out), *written])}")
  return 0 if _all_passed(results) else 1


def _all_passed(results: dict) -> bool:
  """Every run exited 0, every comparison held, the kill happened while the run was running."""
  training = results.get("training")
  if training:
    if not all(training["identical"].values()) or not training["kill"]["killed_while_running"]:
      return False
    if any(r["exit"] for r in training["runs"].values()):
      return False
  return not any(r["exit"] for r in results.get("sweep", {}).get("settings", []))


if __name__ == "__main__":
  cli.run(main)
