"""Every stop signal recorded, announced once, agreed on (here: one process)."""

import os
import signal

import jax
import pytest

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


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2],
                         ids=lambda s: signal.Signals(s).name)
def test_a_schedulers_warning_or_a_closed_terminal_is_a_stop_request(capfd, signum):
  before = signal.getsignal(signum)
  with stopping.StopRequest(notice="got {signal}\n") as request:
    os.kill(os.getpid(), signum)  # the default action would end the process
    assert request.signum == signum
  assert signal.getsignal(signum) is before
  assert capfd.readouterr().err == f"got {signal.Signals(signum).name}\n"
