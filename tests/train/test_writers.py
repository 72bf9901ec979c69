"""metrics.jsonl is strict JSON; a resumed run truncates it; the terminal's progress bar keeps
its text between log lines."""

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import termios

import numpy as np
import pytest

from cnnjax import files
from cnnjax.train import writers
from tests.test_launch import launch, tiny


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.float32("nan")])
def test_a_non_finite_metric_raises_naming_the_key_and_step(tmp_path, value):
  w = writers.MetricWriter(str(tmp_path), total_steps=10, start_step=0, stream=io.StringIO())
  try:
    w.write(1, {"train/loss": 0.5})
    with pytest.raises(ValueError, match=r"metric eval/top1 is -?(nan|inf) at step 3"):
      w.write(3, {"train/loss": 0.25, "eval/top1": value})
  finally:
    w.close()
  lines = (tmp_path / files.METRICS).read_text().splitlines()
  assert [json.loads(line) for line in lines] == [{"step": 1, "train/loss": 0.5}]


def test_json_line_is_strict_json():
  line = writers.json_line(7, {"train/loss": 0.5, "train/lr": 1e-3})

  def reject(token):
    raise AssertionError(token)

  assert json.loads(line, parse_constant=reject) == {"step": 7, "train/loss": 0.5,
                                                      "train/lr": 1e-3}


def test_resume_truncation_survives_a_torn_line(tmp_path):
  path = tmp_path / files.METRICS
  path.write_text('{"step": 1, "a": 1}\n{"step": 5, "a": 2.5}\n{"step": 9, "a"')
  writers.truncate_after(str(path), 5)
  assert path.read_text() == '{"step": 1, "a": 1}\n{"step": 5, "a": 2.5}\n'
  writers.truncate_after(str(tmp_path / "absent.jsonl"), 5)  # nothing to truncate
  assert not (tmp_path / "absent.jsonl").exists()


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_the_bar_keeps_loss_and_rate_between_logs_and_prints_evals_above(tmp_path):
  term = _Terminal()
  w = writers.MetricWriter(str(tmp_path), total_steps=10, start_step=0, stream=term)
  try:
    w.write(2, {"train/loss": 0.125, "train/images_per_sec": 1234.0})
    w.progress(3)
    w.progress(4)
    assert "loss=0.125, img/s=1,234" in w.bar.postfix
    w.write(4, {"eval/loss": 0.5, "eval/top1": 0.75})
    w.progress(5)
    assert "loss=0.125, img/s=1,234" in w.bar.postfix and w.bar.n == 5
  finally:
    w.close()
  text = term.getvalue()
  assert "step 4/10 eval/loss=0.5, eval/top1=0.75\n" in text
  assert "5/10" in text


@pytest.mark.parametrize("stream", [io.StringIO(), _Terminal()], ids=["log", "terminal"])
def test_quiet_prints_nothing_and_writes_the_same_files(tmp_path, stream):
  for quiet, out in ((False, io.StringIO()), (True, stream)):
    workdir = tmp_path / str(quiet)
    workdir.mkdir()
    w = writers.MetricWriter(str(workdir), total_steps=4, start_step=0, stream=out, quiet=quiet)
    try:
      w.write(2, {"train/loss": 0.5})
      w.progress(3)
      w.write(4, {"eval/top1": 0.75})
    finally:
      w.close()
    assert (out.getvalue() == "") == quiet, out.getvalue()
    assert w.bar is None or not quiet
  assert ((tmp_path / "True" / files.METRICS).read_text()
          == (tmp_path / "False" / files.METRICS).read_text()
          == '{"step": 2, "train/loss": 0.5}\n{"step": 4, "eval/top1": 0.75}\n')


def _read_all(fd: int) -> bytes:
  out = b""
  while True:
    try:
      chunk = os.read(fd, 65536)
    except OSError:  # EIO: the child closed its end
      return out
    if not chunk:
      return out
    out += chunk


@pytest.mark.e2e
def test_a_run_on_a_terminal_shows_loss_and_rate_on_the_bar_and_evals_above_it(tmp_path,
                                                                                  data_dir):
  """What a user sees (tqdm on a real pseudo-terminal, not a pipe): the bar's text once the
  first log line has come, and each evaluation as a line of its own while the run goes on."""
  master, slave = pty.openpty()
  fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
  proc = launch(*tiny(tmp_path, data_dir, "--config.num_steps=40", "--config.log_every_steps=5",
                      "--config.checkpoint_every_steps=20"),
                "--config.eval_every_epochs=0.32",  # every 10 steps of 31.25 per epoch
                stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
  os.close(slave)
  try:
    text = _read_all(master).decode(errors="replace")
  finally:
    os.close(master)
  assert proc.wait(timeout=600) == 0, text[-3000:]
  frames = re.split(r"[\r\n]", text)
  bars = [f for f in frames if "/40 [" in f]  # tqdm's n/total [elapsed<eta, ...]
  assert any("loss=" in f and "img/s=" in f and "<" in f for f in bars), bars[-5:]
  shown = [i for i, f in enumerate(frames) if "loss=" in f]
  evals = [i for i, f in enumerate(frames) if f.startswith("step 10/40 eval/") and "eval/top1=" in f]
  assert evals, text[-3000:]
  # the evaluation at step 10 is a line of its own, and the bar (loss included) comes back after
  assert any(i > evals[0] for i in shown), text[-3000:]
  assert frames.index(next(f for f in frames if f.startswith("final "))) > evals[0]
