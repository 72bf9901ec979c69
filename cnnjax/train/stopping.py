"""Stopping cleanly on every signal a scheduler or a terminal sends: finish the call, save,
exit 128 + signal.

Schedulers (Kubernetes, cloud TPU/GPU VMs, Slurm's ``scancel``) preempt with SIGTERM; Slurm warns
before a time limit or a preemption with SIGUSR2 or SIGUSR1 (``--signal``; submitit asks for
USR2), sent to every process of the job step; a closed terminal or a dropped ssh connection sends
SIGHUP; Ctrl-C sends SIGINT. Each of them is a request to stop with a checkpoint, never a reason
to die without one.
``StopRequest`` replaces the default handlers for the duration of a run: a signal only records
itself, the loop finishes the compiled call it is in (one step, or up to ``steps_per_call``),
saves a checkpoint at the step it ends on and stops. Further
signals are ignored until then (an impatient second Ctrl-C can't cost the save); kill -9 still
aborts a hung step at once, and loses nothing saved, as orbax's saves are atomic.

With several processes a signal may reach only some of them, and a process that stops alone
would leave the others waiting in a collective forever. So the flag is all-reduced on the
devices: after every call each process contributes its own flag, and the result of call ``k``
is read after call ``k + 1`` has been dispatched (so it costs no pipeline stall). Every process
reads the same value at the same step, and all stop and save together one call after any of
them was signalled.
"""

from __future__ import annotations

import os
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import parallel

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
# What a run prints when signalled ({signal}: the signal's name); a sweep passes its own.
RUN_NOTICE = ("{signal}: finishing these steps, then saving a checkpoint (further signals are "
              "ignored until it is saved; kill -9 aborts).\n")


class StopRequest:
  """Records the ``SIGNALS`` while installed (a context manager); ``signum`` is the first,
  announced on stderr with ``notice``; later ones are ignored."""

  def __init__(self, notice: str = RUN_NOTICE):
    self.signum: int | None = None
    self._notice = notice
    self._previous: dict[int, object] = {}

  def __enter__(self) -> StopRequest:
    if threading.current_thread() is threading.main_thread():  # handlers live there only
      for s in SIGNALS:
        self._previous[s] = signal.signal(s, self._record)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()

  def _record(self, signum: int, frame) -> None:
    del frame
    if self.signum is None:
      self.signum = signum
      # os.write, not print: the handler may interrupt a write to stderr (tqdm, the writer).
      os.write(2, self._notice.format(signal=signal.Signals(signum).name).encode())


class Agreement:
  """Whether every process should stop now: any process's ``StopRequest``, agreed on."""

  def __init__(self, request: StopRequest, mesh: jax.sharding.Mesh):
    self.request = request
    self.mesh = mesh
    self.single = jax.process_count() == 1
    self._pending = None
    if not self.single:
      self._any = jax.jit(jnp.max, out_shardings=parallel.replicated(mesh))

  def should_stop(self) -> bool:
    """Called after every train call on every process, in the same order."""
    if self.single:
      return self.request.signum is not None
    local = np.full(len(self.mesh.local_devices), self.request.signum or 0, np.int32)
    flag = self._any(jax.make_array_from_process_local_data(parallel.batch_sharding(self.mesh),
                                                            local))
    previous, self._pending = self._pending, flag
    if previous is None:
      return False
    agreed = int(previous)
    if agreed and self.request.signum is None:
      self.request.signum = agreed  # signalled elsewhere: stop for the same reason
    return bool(agreed)
