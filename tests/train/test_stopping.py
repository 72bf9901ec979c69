"""SIGTERM/SIGINT recorded, announced once, agreed on (here: one process)."""

import os
import signal

import jax

from cnnjax import parallel
from cnnjax.train import stopping


def test_a_signal_is_recorded_and_announced_once_then_the_handlers_come_back(capfd):
  before = signal.getsignal(signal.SIGTERM)
  with stopping.StopRequest(notice="got {signal}\n") as request:
    assert request.signum is None
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)  # ignored: the first one is the reason
    assert request.signum == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is before
  assert capfd.readouterr().err == "got SIGTERM\n"


def test_one_process_stops_at_the_call_its_signal_arrives_in():
  with stopping.StopRequest(notice="") as request:
    agreement = stopping.Agreement(request, parallel.make_mesh(jax.devices()[:1]))
    assert agreement.single and not agreement.should_stop()
    os.kill(os.getpid(), signal.SIGINT)
    assert agreement.should_stop() and agreement.request.signum == signal.SIGINT
