"""What the machine can do: its name and its peak FLOP/s, the denominator of MFU.

Accelerators use the vendor's dense peak for the dtype. A CPU has no reliable spec figure (clock,
vector units and SMT vary by VM), so its peak is measured: the best of a few large matmuls in the
dtype, with all cores — the roofline a convolution could reach if it were one big GEMM.
"""

from __future__ import annotations

import functools
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

# Dense tensor-core peak, FLOP/s, per chip. float32 matmuls on NVIDIA run as TF32 under JAX's
# default precision, so their peak is the TF32 figure.
SPEC_PEAK = {
    ("H200", "bfloat16"): 989e12, ("H200", "float32"): 494e12,
    ("H100", "bfloat16"): 989e12, ("H100", "float32"): 494e12,
    ("A100", "bfloat16"): 312e12, ("A100", "float32"): 156e12,
    ("TPU v4", "bfloat16"): 275e12, ("TPU v5 lite", "bfloat16"): 197e12,
    ("TPU v5p", "bfloat16"): 459e12, ("TPU v6 lite", "bfloat16"): 918e12,
}


def device_name(device: jax.Device | None = None) -> str:
  device = device or jax.devices()[0]
  if device.platform == "cpu":
    return cpu_name()
  return device.device_kind


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def spec_peak(device: jax.Device, dtype: str) -> float | None:
  for (kind, dt), peak in SPEC_PEAK.items():
    if kind.lower() in device.device_kind.lower() and dt == dtype:
      return peak
  return None


def measured_matmul_peak(dtype: str, n: int | None = None, repeats: int = 10) -> float:
  """Best FLOP/s of an n×n matmul on the default device (n: 2048 on CPU, 8192 elsewhere)."""
  on_cpu = jax.devices()[0].platform == "cpu"
  n = n or (2048 if on_cpu else 8192)
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = np.inf
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best


@functools.lru_cache(maxsize=None)  # measured once per process and dtype
def peak_flops(dtype: str) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure comes from).

  Virtual CPU devices (``--xla_force_host_platform_device_count``) share the same cores, so on
  CPU the measured figure is split between them.
  """
  device = jax.local_devices()[0]
  spec = spec_peak(device, dtype)
  if spec is not None:
    return spec, "spec"
  peak = measured_matmul_peak(dtype)
  if device.platform == "cpu":
    peak /= len(jax.local_devices())
  return peak, "measured matmul"
