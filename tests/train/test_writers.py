"""metrics.jsonl is strict JSON; a resumed run truncates it; the terminal's progress bar keeps
its text between log lines."""

import io
import json

import numpy as np
import pytest

from cnnjax import files
from cnnjax.train import writers


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
