"""results.csv from hand-written run files, in-process: the final metrics (a torn line
skipped), each run's status from its result.json and claim, the CSV written atomically, and the
input size a run's model is counted at."""

import json
import os

import pytest

from cnnjax import files
from cnnjax.sweep import results, store

METRICS = [
    {"step": 10, "train/loss": 2.0, "train/top1": 0.1, "train/images_per_sec": 100.0},
    {"step": 20, "eval/loss": 1.5, "eval/top1": 0.5, "eval/top5": 0.9},
    {"step": 20, "train/loss": 1.0, "train/top1": 0.6, "train/images_per_sec": 300.0},
    {"step": 30, "train/loss": 0.5, "train/top1": 0.8, "train/images_per_sec": 250.0},
]


def _trial(variant="v", seed=0, config_hash="h"):
  return store.Trial(variant, seed, {}, config_hash, store.trial_dir(variant, seed))


def _write_run(sweep_dir, trial, status="done", torn=True):
  """A run's files as the child and the sweep leave them."""
  run_dir = trial.run_dir(str(sweep_dir))
  os.makedirs(run_dir)
  lines = [json.dumps(r) for r in METRICS] + (['{"step": 40, "eval/to'] if torn else [])
  with open(os.path.join(run_dir, files.METRICS), "w") as f:
    f.write("\n".join(lines) + "\n")
  store.write_result(run_dir, store.TrialResult(
      status, trial.config_hash, 0 if status == "done" else 3, 1,
      wall_s=7.0 if status == "done" else None, error=None if status == "done" else "error: x"))
  # The variant's model facts, as the first done seed left them (no checkpoint, no tracing).
  files.write_json(os.path.join(str(sweep_dir), trial.variant, "model.json"),
                   {"params": 61706, "macs": 416520})
  return run_dir


def test_finals_are_the_last_eval_and_the_last_train_window():
  assert results.finals(METRICS) == {"eval/loss": 1.5, "eval/top1": 0.5, "eval/top5": 0.9,
                                     "train/loss": 0.5, "train/top1": 0.8}
  assert results.finals([]) == {}


def test_a_done_row_from_the_files_skips_a_torn_line(tmp_path):
  trial = _trial()
  _write_run(tmp_path, trial)
  row = results.row(str(tmp_path), trial)
  assert row.status == "done" and row.finals["eval/top1"] == 0.5 and row.finals["train/loss"] == 0.5
  assert row.images_per_sec == 250.0  # the median of 100, 300, 250
  assert (row.params, row.macs, row.wall_s, row.attempt, row.exit_code) == (61706, 416520, 7.0,
                                                                            1, 0)
  assert row.error is None


def test_status_from_the_result_and_the_claim(tmp_path):
  trial = _trial()
  run_dir = trial.run_dir(str(tmp_path))
  assert results.row(str(tmp_path), trial).status == "pending"  # nothing yet
  _write_run(tmp_path, trial, status="failed")
  failed = results.row(str(tmp_path), trial)
  assert failed.status == "failed" and failed.error == "error: x" and failed.finals == {}
  with store.claim(run_dir):  # retried by a worker now
    assert results.row(str(tmp_path), trial).status == "running"
  store.write_result(run_dir, store.TrialResult("stopped", "h", 143, 1, partial_wall_s=3.0))
  assert results.status(run_dir, store.read_result(run_dir), "h") == "stopped"
  store.write_result(run_dir, store.TrialResult("done", "h", 0, 1, wall_s=1.0))
  assert results.status(run_dir, store.read_result(run_dir), "h") == "done"
  # A result of the point's earlier config is none: the point is to run again.
  assert results.row(str(tmp_path), _trial(config_hash="new")).status == "pending"
  assert results.row(str(tmp_path), _trial(config_hash="new")).exit_code is None


def test_results_csv_columns_and_values(tmp_path):
  done, failed = _trial("a"), _trial("b")
  _write_run(tmp_path, done)
  _write_run(tmp_path, failed, status="failed")
  record = store.SweepRecord((done, failed), {"a": {}, "b": {}}, "eval/top1", "a", "h", "x.py")
  rows = results.write_results(str(tmp_path), record)
  assert [r.status for r in rows] == ["done", "failed"]
  text = (tmp_path / "results.csv").read_text()
  assert text.splitlines() == [
      "variant,seed,workdir,status,eval/loss,eval/top1,eval/top5,train/loss,train/top1,params,"
      "macs,images_per_sec,wall_s,attempt,exit_code,error",
      "a,0,a/seed=0,done,1.5,0.5,0.9,0.5,0.8,61706,416520,250.0,7.0,1,0,",
      "b,0,b/seed=0,failed,,,,,,,,,,1,3,error: x"]


def test_the_csv_is_written_atomically(tmp_path, monkeypatch):
  path = str(tmp_path / "results.csv")
  results.write_csv(path, [{"a": 1, "b": None}], ["a", "b"])
  assert open(path, "rb").read() == b"a,b\r\n1,\r\n"  # as csv writes it

  def no_rename(*_):
    raise OSError("disk full")
  monkeypatch.setattr(os, "replace", no_rename)  # the rename of files.atomic_path fails
  with pytest.raises(OSError, match="disk full"):
    results.write_csv(path, [{"a": 2, "b": 3}], ["a", "b"])
  assert open(path, "rb").read() == b"a,b\r\n1,\r\n"  # the old file, whole
  assert os.listdir(tmp_path) == ["results.csv"]  # and no temporary left


@pytest.mark.parametrize("config,expected", [
    ({"model": "lenet5", "dataset": "mnist5k", "data": {}}, (28, 10)),  # one fixed size
    ({"model": "lenet5", "dataset": "cifar10", "data": {"crop": 32}}, (28, 10)),
    ({"model": "resnet20", "dataset": "cifar100", "data": {}}, (32, 100)),  # the data's size
    ({"model": "resnet20", "dataset": "uci_digits", "data": {"image_size": 16}}, (16, 10)),
    ({"model": "resnet20", "dataset": "folder:/x", "data": {"crop": 64}, "num_classes": 5},
     (64, 5)),
    ({"model": "alexnet", "dataset": "uci_digits", "data": {}}, (63, 10)),  # the model's minimum
    ({"model": "vgg16", "dataset": "somewhere", "data": {}}, (224, 1000)),  # the model's own
])
def test_the_input_size_macs_are_counted_at(config, expected):
  assert results.model_input(config) == expected
