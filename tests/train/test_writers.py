"""metrics.jsonl is strict JSON: a non-finite value raises instead of writing NaN/Infinity."""

import io
import json

import numpy as np
import pytest

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
  lines = (tmp_path / writers.METRICS_FILE).read_text().splitlines()
  assert [json.loads(line) for line in lines] == [{"step": 1, "train/loss": 0.5}]


def test_json_line_is_strict_json():
  line = writers.json_line(7, {"train/loss": 0.5, "train/lr": 1e-3})

  def reject(token):
    raise AssertionError(token)

  assert json.loads(line, parse_constant=reject) == {"step": 7, "train/loss": 0.5,
                                                      "train/lr": 1e-3}
