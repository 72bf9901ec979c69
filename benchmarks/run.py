r"""Side-by-side throughput: cnnjax (JAX) against PyTorch on the same models, synthetic data.

  python -m benchmarks.run                      # lenet5, resnet20, resnet18@32, resnet50@224
  python -m benchmarks.run --models=resnet50@224 --dtype=bfloat16 --max_batch --frameworks=jax

Each (framework, case) runs in its own subprocess, one after another, so neither framework's
threads or memory disturb the other. Prints a table and writes every number to ``--out`` (JSON).
The JAX side needs only jax, flax, optax and numpy; PyTorch and grain are used when installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from absl import flags

from benchmarks import cases, cli, results_io
from cnnjax import files, hugepages

FLAGS = flags.FLAGS
flags.DEFINE_list("models", list(cases.DEFAULTS), "Cases: MODEL or MODEL@INPUT_SIZE.")
flags.DEFINE_list("frameworks", ["jax", "torch"], "Any of jax, torch.")
flags.DEFINE_integer("batch", None, "Batch size for every case (default: per case).")
flags.DEFINE_boolean("max_batch", False, "JAX: the largest power-of-two batch whose compiled "
                     "train step fits in 90% of device memory (GPU/TPU; PyTorch keeps --batch).")
flags.DEFINE_string("dtype", "float32", "float32 | bfloat16 (torch: autocast).")
flags.DEFINE_float("min_time", 10.0, "Seconds of timed train steps per measurement (at least).")
flags.DEFINE_integer("min_steps", 5, "Timed train steps per measurement (at least).")
flags.DEFINE_boolean("inference", True, "Also measure inference throughput.")
flags.DEFINE_boolean("pipeline", True, "Also measure the grain input pipeline (needs grain).")
flags.DEFINE_string("out", "benchmarks/results/benchmark.json",
                    "Where to write the results (JSON; the printed tables as CSV beside it).")
flags.DEFINE_string("torch_python", None, "The Python that runs the PyTorch workers (default: "
                    "this one), e.g. a Python 3.11 venv's with torch beside a 3.12 one's with "
                    "JAX 0.12.")
flags.DEFINE_string("worker", None, "Internal: run one measurement, FRAMEWORK[:FORMAT]:CASE.")

FRAMEWORKS = ("jax", "torch")


def _installed(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):  # a module blocked or half-installed
    return False


def _worker(spec: str) -> dict:
  framework, _, rest = spec.partition(":")
  case = cases.parse(rest.split(":")[-1], batch=FLAGS.batch, dtype=FLAGS.dtype)
  kwargs = dict(min_time=FLAGS.min_time, min_steps=FLAGS.min_steps, inference=FLAGS.inference)
  if framework == "jax":
    from benchmarks import jax_bench  # pylint: disable=import-outside-toplevel
    if FLAGS.max_batch:
      case = jax_bench.largest_batch(case)
    return jax_bench.measure(case, **kwargs)
  from benchmarks import torch_bench  # pylint: disable=import-outside-toplevel
  return torch_bench.measure(case, memory_format=rest.split(":")[0], **kwargs)


def _spawn(spec: str, argv: list[str]) -> dict:
  python = FLAGS.torch_python if spec.startswith("torch") and FLAGS.torch_python else sys.executable
  cmd = [python, "-m", "benchmarks.run", f"--worker={spec}", *argv]
  # cnnjax's train step runs as launch.py runs it (huge pages for XLA's buffers); PyTorch's in
  # the environment as it is
  env = hugepages.environment() if spec.startswith("jax") and hugepages.wanted() else None
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
  if proc.returncode:
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"{spec}: {tail.removeprefix('error: ')}", "exit": proc.returncode}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(value, spec: str = ",.0f") -> str:
  if value is None:
    return "—"
  if spec == ",.0f" and abs(value) < 100:  # a few images/s: keep three significant digits
    return format(value, ".3g")
  return format(value, spec)


def _rows(results: dict[str, dict[str, dict]]) -> list[str]:
  head = ("| model @ input | batch | cnnjax img/s | compile s | MFU | PyTorch img/s (NCHW / "
          "channels_last) | ratio | cnnjax infer img/s | PyTorch infer img/s |")
  lines = [head, "|" + "---|" * 9]
  for label, r in results.items():
    jx = r.get("jax", {})
    tv = [r.get(f"torch:{f}", {}) for f in ("contiguous", "channels_last")]
    jit = jx.get("train", {}).get("images_per_s")
    tts = [t.get("train", {}).get("images_per_s") for t in tv]
    best = max((t for t in tts if t), default=None)
    infer_t = max((t.get("inference", {}).get("images_per_s") or 0 for t in tv), default=0)
    batch = jx.get("batch") or next((t.get("batch") for t in tv if t.get("batch")), None)
    lines.append(
        f"| {label} | {batch} | {_fmt(jit)} | {_fmt(jx.get('compile_s'), '.1f')} | "
        f"{_fmt(jx.get('mfu'), '.1%')} | {_fmt(tts[0])} / {_fmt(tts[1])} | "
        f"{_fmt(jit / best, '.2f') + '×' if jit and best else '—'} | "
        f"{_fmt(jx.get('inference', {}).get('images_per_s'))} | {_fmt(infer_t or None)} |")
  return lines


def _pipeline(results: dict[str, dict[str, dict]]) -> list[str]:
  from benchmarks import pipeline_bench  # pylint: disable=import-outside-toplevel
  lines = ["", "| input pipeline (grain, 2 threads) | img/s | feeds | its train step img/s |",
           "|---|---|---|---|"]
  for name, (dataset, options, label) in pipeline_bench.streams().items():
    r = pipeline_bench.measure(dataset, options, min_time=FLAGS.min_time / 2)
    step = results.get(label, {}).get("jax", {}).get("train", {}).get("images_per_s")
    results.setdefault("pipeline", {})[name] = {**r, "feeds": label}
    lines.append(f"| {name} | {r['images_per_s']:,.0f} | {label} | {_fmt(step)} |")
  return lines


def _parse_cases() -> list[cases.Case]:
  from cnnjax.models import registry  # pylint: disable=import-outside-toplevel
  bad = [f for f in FLAGS.frameworks if f not in FRAMEWORKS]
  if bad:
    cli.fail(f"unknown framework {bad[0]!r}; choose from {', '.join(FRAMEWORKS)}.")
  with cli.user_errors():
    for text in FLAGS.models:
      registry.get_spec(text.partition("@")[0])
    return [cases.parse(m, batch=FLAGS.batch, dtype=FLAGS.dtype) for m in FLAGS.models]


def main(argv):
  cli.start(argv)
  if FLAGS.worker:
    with cli.user_errors():
      print(json.dumps(cli.finite_or_null(_worker(FLAGS.worker)), allow_nan=False))
    return 0
  parsed = _parse_cases()
  if FLAGS.torch_python and not os.access(FLAGS.torch_python, os.X_OK):
    cli.fail(f"--torch_python={FLAGS.torch_python!r} is not an executable file.")
  passthrough = [a for a in sys.argv[1:] if a.split("=")[0].lstrip("-") in
                 ("batch", "dtype", "min_time", "min_steps", "inference", "noinference",
                  "max_batch", "nomax_batch")]
  results: dict[str, dict[str, dict]] = {}
  specs = []
  if "jax" in FLAGS.frameworks:
    specs.append("jax")
  if "torch" in FLAGS.frameworks and (FLAGS.torch_python or _installed("torch")):
    specs += ["torch:contiguous", "torch:channels_last"]
  for case, text in zip(parsed, FLAGS.models):
    for spec in specs:
      r = _spawn(f"{spec}:{text}", passthrough)
      results.setdefault(case.label, {})[spec] = r
      if "error" in r:
        print(f"error: {r['error']}", file=sys.stderr)
  lines = _rows(results)
  versions = sorted({r.get("version") for per_case in results.values() for r in per_case.values()
                     if r.get("version")})
  lines.append(f"\n{', '.join(versions)}; Python {sys.version.split()[0]} runs JAX"
               + (f", {FLAGS.torch_python} runs PyTorch" if FLAGS.torch_python else ""))
  lowering = {r.get("jax", {}).get("cpu_kernels") for r in results.values()} - {None}
  if lowering:
    lines.append(f"\ncnnjax's CPU lowering: {', '.join(sorted(lowering))} "
                 "(CNNJAX_ONEDNN=0 for XLA's own)")
  if FLAGS.pipeline and all(_installed(m) for m in ("grain", "tensorflow_datasets")):
    lines += _pipeline(results)
  print("\n".join(lines))
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  files.write_json(FLAGS.out, cli.finite_or_null(results), indent=1)
  written = results_io.write_tables(FLAGS.out, lines)
  print(f"\nwrote {', '.join([os.path.abspath(FLAGS.out), *written])}")
  exits = {r.get("exit", 0) for per_case in results.values() for r in per_case.values()}
  if cli.USAGE_ERROR in exits:  # bad input met only in a worker (--max_batch on a CPU)
    return cli.USAGE_ERROR
  return 1 if any(exits) else 0


if __name__ == "__main__":
  cli.run(main)
