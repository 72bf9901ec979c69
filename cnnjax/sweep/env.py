"""Which devices (or cores) each worker's children see: pure functions, plus the one probe.

GPUs: one device per worker by default (``CUDA_VISIBLE_DEVICES``); several runs per device on
request, with JAX's memory preallocation off so they fit side by side. TPUs: one chip per
process (``TPU_VISIBLE_CHIPS`` with one-chip process bounds and a port of its own); a chip can't
be shared. CPU: the cores are split between the workers (an affinity mask per child, which
XLA's thread pool sizes itself by, plus the OpenMP/MKL thread counts).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from cnnjax.errors import UserError

PLATFORMS = ("cpu", "gpu", "tpu")
TPU_BASE_PORT = 8476


@dataclasses.dataclass(frozen=True)
class Slot:
  """One worker: the environment its children get and the cores they may use (None: all)."""

  env: Mapping[str, str]
  cpus: tuple[int, ...] | None = None
  label: str = ""


def _split(cpus: Sequence[int], workers: int) -> list[tuple[int, ...]]:
  """Contiguous shares of ``cpus``, as equal as possible; more workers than cores share."""
  if workers > len(cpus):
    return [(cpus[i % len(cpus)],) for i in range(workers)]
  base, extra = divmod(len(cpus), workers)
  shares, start = [], 0
  for i in range(workers):
    n = base + (i < extra)
    shares.append(tuple(cpus[start:start + n]))
    start += n
  return shares


def _cpu_slots(workers: int, cpus: Sequence[int]) -> list[Slot]:
  slots = []
  for share in _split(list(cpus), workers):
    threads = str(len(share))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    slots.append(Slot(env, share if workers > 1 else None, f"cpu {','.join(map(str, share))}"))
  return slots


def slots(platform: str, devices: Sequence[str], workers: int | None = None,
          runs_per_device: int = 1, cpus: Sequence[int] = ()) -> list[Slot]:
  """The workers of a local sweep.

  Args:
    platform: ``cpu``, ``gpu`` or ``tpu``.
    devices: the accelerator ids the parent may use (ignored on CPU).
    workers: how many runs at once; default one per device (× ``runs_per_device``), 1 on CPU.
    runs_per_device: runs sharing one GPU.
    cpus: the parent's cores (on CPU they are split between the workers).
  """
  if platform not in PLATFORMS:
    raise UserError(f"unknown platform {platform!r}. Valid choices: {', '.join(PLATFORMS)}.")
  if runs_per_device < 1 or (workers is not None and workers < 1):
    raise UserError(f"--sweep_workers and --sweep_runs_per_device must be >= 1, got "
                    f"{workers} and {runs_per_device}.")
  if platform == "cpu":
    return _cpu_slots(workers or 1, cpus or [0])
  if platform == "tpu" and runs_per_device > 1:
    raise UserError("a TPU chip belongs to one process: --sweep_runs_per_device must be 1.")
  capacity = len(devices) * runs_per_device
  workers = workers or capacity
  if workers > capacity:
    raise UserError(f"--sweep_workers={workers} is more than the {len(devices)} {platform} "
                    f"device(s) × --sweep_runs_per_device={runs_per_device}; raise "
                    "--sweep_runs_per_device to share devices.")
  result = []
  for i in range(workers):
    device = devices[i // runs_per_device] if runs_per_device > 1 else devices[i]
    result.append(Slot(_device_env(platform, device, i, runs_per_device), None,
                       f"{platform} {device}"))
  return result


def affinity_prefix(slot: Slot) -> list[str]:
  """``taskset -c CPUS`` for a slot with its own cores (util-linux; none where it is missing)."""
  if not slot.cpus or shutil.which("taskset") is None:
    return []
  return ["taskset", "-c", ",".join(map(str, slot.cpus))]


def _device_env(platform: str, device: str, index: int, runs_per_device: int) -> dict[str, str]:
  if platform == "gpu":
    env = {"CUDA_VISIBLE_DEVICES": device}
    if runs_per_device > 1:
      env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env
  return {"TPU_VISIBLE_CHIPS": device, "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1",
          "TPU_PROCESS_BOUNDS": "1,1,1", "TPU_PROCESS_PORT": str(TPU_BASE_PORT + index),
          "TPU_PROCESS_ADDRESSES": f"localhost:{TPU_BASE_PORT + index}",
          "CLOUD_TPU_TASK_ID": "0"}


def detect(environ: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
  """The local accelerators, found without initialising any (the parent never holds a device):
  ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi -L``, then TPU chips under /dev, else CPU."""
  environ = os.environ if environ is None else environ
  platforms = environ.get("JAX_PLATFORMS", "")
  if platforms.startswith("cpu"):
    return "cpu", []
  visible = environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None and visible.strip() not in ("", "-1"):
    return "gpu", [d.strip() for d in visible.split(",") if d.strip()]
  if visible is None and shutil.which("nvidia-smi"):
    try:
      out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
      gpus = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
      if gpus:
        return "gpu", [str(i) for i in range(len(gpus))]
    except (OSError, subprocess.SubprocessError):
      pass
  chips = sorted(glob.glob("/dev/accel[0-9]*")) or sorted(glob.glob("/dev/vfio/[0-9]*"))
  if chips:
    return "tpu", [str(i) for i in range(len(chips))]
  return "cpu", []


def local_slots(workers: int | None, runs_per_device: int) -> list[Slot]:
  platform, devices = detect()
  return slots(platform, devices, workers, runs_per_device, sorted(os.sched_getaffinity(0)))
