r"""Where a train step's time goes: XLA's own ops (fusions, convolutions, dots) by time per step.

  python -m benchmarks.profile_step --model=resnet20 --batch=128
  python -m benchmarks.profile_step --model=lenet5 --batch=256 --top=15

Runs the benchmark's train step under ``jax.profiler`` and sums the trace's complete events by
name. On CPU it sets ``--xla_cpu_enable_xprof_traceme`` (before JAX starts) so that every XLA:CPU
thunk is named in the trace; the op names match the optimized HLO
(``jax.jit(...).lower(...).compile().as_text()``). Time spent in ops without a trace event (some
convolutions) shows as the gap between the step total and the listed ops.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import tempfile

if "xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_cpu_enable_xprof_traceme=true").strip()

# pylint: disable=wrong-import-position
import jax
from absl import flags

from benchmarks import cases, cli, jax_bench

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet20", "A case: MODEL or MODEL@INPUT_SIZE.")
flags.DEFINE_integer("batch", None, "Batch size (default: the case's).")
flags.DEFINE_integer("steps", 5, "Profiled steps (times are averaged over them).")
flags.DEFINE_integer("top", 25, "How many ops to list.")

def hlo_names(hlo_text: str) -> set[str]:
  """The instruction names of an optimized HLO module (``%name = ...``)."""
  return set(re.findall(r"%([\w.\-]+) = ", hlo_text))


def op_times(trace_dir: str, steps: int, ops: set[str]) -> dict[str, float]:
  """Op name → milliseconds per step, from the perfetto trace ``jax.profiler`` wrote; only the
  events named after one of ``ops`` (runtime bookkeeping, waits and rendezvous are dropped)."""
  path = glob.glob(os.path.join(trace_dir, "**", "*perfetto_trace.json.gz"), recursive=True)[0]
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  total: collections.Counter = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e["name"] in ops:
      total[e["name"]] += e.get("dur", 0) / 1e3 / steps
  return dict(total)


def main(argv):
  cli.start(argv)
  with cli.user_errors():
    case = cases.parse(FLAGS.model, batch=FLAGS.batch)
    step, state, batch, key = jax_bench.compiled_train_step(case)
  for _ in range(3):
    state, _ = step(state, batch, key)
  jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(FLAGS.steps):
        state, metrics = step(state, batch, key)
      jax.block_until_ready((state, metrics))
    times = op_times(trace_dir, FLAGS.steps, hlo_names(step.as_text()))
  listed = sorted(times.items(), key=lambda kv: -kv[1])[:FLAGS.top]
  print(f"{case.label}, batch {case.batch}: ms per step in XLA's ops "
        f"(all named ops: {sum(times.values()):.1f} ms)")
  for name, ms in listed:
    print(f"{ms:9.2f}  {name}")


if __name__ == "__main__":
  cli.run(main)
