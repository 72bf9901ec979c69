"""Joining a multi-process run: checked flags, a rendezvous that can fail cleanly, then JAX.

Why a rendezvous of our own: on JAX 0.10.2 ``jax.distributed.initialize`` with a missing peer
aborts the process from C++ (LOG(FATAL), SIGABRT, a long stack dump) once its timeout passes;
Python can't catch that. So, when the coordinator, process count and id are given, the processes
first meet over a plain TCP socket on the coordinator's port:

* process 0 listens there and waits up to ``timeout_s`` for every other process to connect and
  announce ``cnnjax <process_id> <num_processes>``; a duplicate, out-of-range or mismatched
  announcement, or the timeout, ends the run with one line naming the problem; once all are in it
  answers ``go`` to each, and closes the socket so JAX's coordination service can take the port;
* every other process retries connecting until ``timeout_s`` and waits for that answer.

Only then is ``jax.distributed.initialize`` called, by processes that all know the others exist.
"""

from __future__ import annotations

import math
import socket
import time

from cnnjax.errors import RunFailed, UserError

_RETRY_S = 0.1


def check_flags(coordinator: str | None, num_processes: int | None, process_id: int | None,
                timeout_s: float) -> tuple[str, int] | None:
  """(host, port) of the coordinator; None when all three are left to JAX's auto-detection
  (Slurm, TPU pods). Raises ``UserError`` with one line for anything inconsistent."""
  if not 0 < timeout_s < math.inf:
    raise UserError(f"--distributed_timeout_s={timeout_s:g} must be > 0 (seconds).")
  given = {"--coordinator": coordinator, "--num_processes": num_processes,
           "--process_id": process_id}
  if all(v is None for v in given.values()):
    return None
  missing = [k for k, v in given.items() if v is None]
  if missing:
    raise UserError(f"--distributed needs --coordinator, --num_processes and --process_id "
                    f"together (or none, for auto-detection); missing {', '.join(missing)}.")
  if num_processes < 1:
    raise UserError(f"--num_processes={num_processes} must be >= 1.")
  if not 0 <= process_id < num_processes:
    raise UserError(f"--process_id={process_id} must be in 0..{num_processes - 1} "
                    f"(--num_processes={num_processes}).")
  host, _, port = coordinator.rpartition(":")
  if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise UserError(f"--coordinator={coordinator!r} must be HOST:PORT with a port in 1..65535, "
                    "e.g. 127.0.0.1:12345.")
  return host.strip("[]"), int(port)


def rendezvous(host: str, port: int, num_processes: int, process_id: int,
               timeout_s: float) -> None:
  """Returns once all ``num_processes`` processes have met at ``host:port``; ``RunFailed``
  with one line if they don't within ``timeout_s``."""
  if num_processes == 1:
    return
  if process_id == 0:
    _serve(host, port, num_processes, timeout_s)
  else:
    _join(host, port, num_processes, process_id, timeout_s)


def _listen(host: str, port: int) -> socket.socket:
  try:  # every interface, as JAX's coordinator does: the host's name may resolve elsewhere
    if socket.has_dualstack_ipv6():
      return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("", port))
  except OSError as e:
    raise RunFailed(f"process 0 can't listen on {host}:{port}: {e.strerror or e}; choose another "
                    "--coordinator port.") from None


def _serve(host: str, port: int, num_processes: int, timeout_s: float) -> None:
  deadline = time.monotonic() + timeout_s
  joined: dict[int, socket.socket] = {}
  with _listen(host, port) as server:
    try:
      while len(joined) < num_processes - 1:
        left = deadline - time.monotonic()
        if left <= 0:
          missing = sorted(set(range(1, num_processes)) - set(joined))
          raise RunFailed(
              f"process 0 waited {timeout_s:g} s at {host}:{port} for {len(missing)} of "
              f"{num_processes} processes (missing: {', '.join(map(str, missing))}); check "
              "--num_processes/--process_id and that every process was started.")
        server.settimeout(left)
        try:
          conn, _ = server.accept()
        except socket.timeout:
          continue
        peer = _announcement(conn, min(left, 5.0))
        problem = _check_peer(peer, num_processes, joined)
        if problem:
          _send_quietly(conn, f"error {problem}\n")
          conn.close()
          raise RunFailed(problem)
        joined[peer[0]] = conn
      for conn in joined.values():
        conn.sendall(b"go\n")
    except RunFailed as e:
      for conn in joined.values():
        _send_quietly(conn, f"error {e}\n")
      raise
    finally:
      for conn in joined.values():
        conn.close()


def _announcement(conn: socket.socket, timeout_s: float) -> tuple[int, int] | None:
  """(process_id, num_processes) from a ``cnnjax ID N`` line; None for anything else."""
  conn.settimeout(timeout_s)
  try:
    words = _read_line(conn).split()
  except OSError:
    return None
  if len(words) == 3 and words[0] == "cnnjax" and all(w.isdigit() for w in words[1:]):
    return int(words[1]), int(words[2])
  return None


def _check_peer(peer: tuple[int, int] | None, num_processes: int,
                joined: dict[int, socket.socket]) -> str | None:
  """The one-line problem with an announcement, or None if it is a new, valid peer."""
  if peer is None:
    return "process 0 got a connection that is not a cnnjax process on the coordinator port."
  pid, n = peer
  if n != num_processes:
    return (f"process {pid} was started with --num_processes={n}, process 0 with "
            f"{num_processes}; give every process the same value.")
  if not 1 <= pid < num_processes:
    return f"a process announced --process_id={pid}, outside 1..{num_processes - 1}."
  if pid in joined:
    return f"two processes were started with --process_id={pid}; give each its own id."
  return None


def _join(host: str, port: int, num_processes: int, process_id: int, timeout_s: float) -> None:
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      conn = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.1))
      break
    except OSError:
      if time.monotonic() >= deadline:
        raise RunFailed(f"process {process_id} could not reach process 0 at {host}:{port} within "
                        f"{timeout_s:g} s; check --coordinator and that process 0 was "
                        "started.") from None
      time.sleep(_RETRY_S)
  with conn:
    try:
      conn.sendall(f"cnnjax {process_id} {num_processes}\n".encode())
      conn.settimeout(timeout_s + 5.0)  # process 0 answers within its own timeout
      answer = _read_line(conn)
    except OSError as e:
      raise RunFailed(f"process {process_id} lost process 0 at {host}:{port} before the run "
                      f"started: {e.strerror or e}.") from None
  if answer.startswith("error "):
    raise RunFailed(answer[len("error "):])
  if answer != "go":
    raise RunFailed(f"process {process_id} got no answer from process 0 at {host}:{port}; it "
                    "ended before every process had joined.")


def _read_line(conn: socket.socket, limit: int = 1024) -> str:
  data = b""
  while not data.endswith(b"\n") and len(data) < limit:
    chunk = conn.recv(limit)
    if not chunk:
      break
    data += chunk
  return data.decode(errors="replace").strip()


def _send_quietly(conn: socket.socket, text: str) -> None:
  try:
    conn.sendall(text.encode())
  except OSError:
    pass  # that peer is gone; it fails on its own


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None,
               timeout_s: float) -> None:
  """Checks the flags, meets the other processes (when they are given explicitly), then calls
  ``jax.distributed.initialize``; ``UserError`` / ``RunFailed`` with one line on failure."""
  address = check_flags(coordinator, num_processes, process_id, timeout_s)
  if address is not None:
    rendezvous(*address, num_processes, process_id, timeout_s)
  import jax  # pylint: disable=import-outside-toplevel  # flag errors come before JAX loads
  try:
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id,
                               initialization_timeout=max(int(round(timeout_s)), 1))
  except ValueError as e:  # nothing to auto-detect (not under Slurm, MPI or on a TPU pod)
    raise UserError(f"--distributed: {str(e).splitlines()[0]} Give --coordinator, "
                    "--num_processes and --process_id where JAX can't detect them.") from None
