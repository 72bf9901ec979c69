"""The pre-flight rendezvous: processes meet, or fail with one line naming who is missing."""

import socket
import threading

import pytest

from cnnjax import distributed
from cnnjax.errors import RunFailed, UserError


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def meet(ids, num_processes, timeout_s=5.0):
  """Runs ``rendezvous`` for each id in its own thread; {index: None or the error message}."""
  port, results = free_port(), {}

  def run(i, pid):
    try:
      distributed.rendezvous("127.0.0.1", port, num_processes, pid, timeout_s)
      results[i] = None
    except RunFailed as e:
      results[i] = str(e)

  threads = [threading.Thread(target=run, args=(i, pid)) for i, pid in enumerate(ids)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout_s + 10)
  return port, results


def test_all_processes_meet():
  _, results = meet([2, 0, 1], 3)
  assert results == {0: None, 1: None, 2: None}


def test_a_missing_process_is_named_by_every_waiting_process():
  port, results = meet([0, 2], 3, timeout_s=1.0)
  expected = (f"process 0 waited 1 s at 127.0.0.1:{port} for 1 of 3 processes (missing: 1); "
              "check --num_processes/--process_id and that every process was started.")
  assert results == {0: expected, 1: expected}


def test_a_duplicate_process_id_fails_the_run():
  _, results = meet([0, 1, 1], 3)
  assert results[0] == "two processes were started with --process_id=1; give each its own id."
  assert all(results[i] is not None for i in (1, 2))


def test_peer_without_process_0_gives_up_after_the_timeout():
  port, results = meet([1], 2, timeout_s=0.5)
  assert results[0].startswith(f"process 1 could not reach process 0 at 127.0.0.1:{port} within "
                               "0.5 s")


@pytest.mark.parametrize("args,message", [
    (("127.0.0.1:80", 2, None, 300), r"missing --process_id"),
    (("127.0.0.1:80", 0, 0, 300), r"--num_processes=0 must be >= 1"),
    (("127.0.0.1:80", 2, -1, 300), r"--process_id=-1 must be in 0\.\.1"),
    (("127.0.0.1:0", 2, 0, 300), r"port in 1\.\.65535"),
    (("127.0.0.1:http", 2, 0, 300), r"HOST:PORT"),
    ((None, None, None, -1), r"--distributed_timeout_s=-1 must be > 0"),
])
def test_bad_flags(args, message):
  with pytest.raises(UserError, match=message):
    distributed.check_flags(*args)


def test_no_flags_leave_it_to_jax_auto_detection():
  assert distributed.check_flags(None, None, None, 300) is None
  assert distributed.check_flags("[::1]:123", 2, 1, 1) == ("::1", 123)
