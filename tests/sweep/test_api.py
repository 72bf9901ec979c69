"""A sweep from Python: its config kept as an experiment file, bad input refused before anything
starts, and (with a stand-in launch.py whose runs write known metrics) the runs' command lines,
the typed results, the statistics and a second call that runs nothing."""

import functools
import inspect
import json
import os
import textwrap

import pytest

from cnnjax import config as config_lib
from cnnjax.errors import UserError
from cnnjax.sweep import Sweep, api, runner, spec, store
from tests.test_launch import ROOT

ACTIVATIONS = Sweep({"model_options.activation": ["relu", "gelu"]}, seeds=(0, 1))


def lenet():
  config = config_lib.defaults()
  config.model, config.dataset, config.num_steps = "lenet5", "mnist5k", 7
  config.optimizer.learning_rate = 3e-3
  return config


def test_a_configdict_becomes_an_experiment_file_that_gives_it_back(tmp_path):
  config = lenet()
  path = tmp_path / api.EXPERIMENT
  path.write_text(api.experiment_text(config))
  loaded = config_lib.load(str(path))
  assert spec.config_hash(loaded) == spec.config_hash(config)
  assert loaded.data.crop is None and loaded.init_skip == ()
  # the runs' --config.key=value flags still type-check: None-valued keys keep their types
  assert config_lib.with_values(loaded, {"model_options.activation": "gelu"}
                                ).model_options.activation == "gelu"
  with pytest.raises(UserError, match="config.num_steps='many' doesn't fit"):
    config_lib.with_values(loaded, {"num_steps": "many"})


@pytest.mark.parametrize("config,sweep,message", [
    (lenet(), None, "needs sweep=Sweep"),
    ({"model": "lenet5"}, ACTIVATIONS, "got dict"),
    (lenet(), Sweep({"model_options.activaton": ["relu"]}), "Did you mean 'model_options.activation'"),
    (lenet(), Sweep({"model_options.dropout": [1.5]}), "sweep point 'dropout=1.5'"),
])
def test_bad_input_is_one_error_before_anything_is_written(tmp_path, config, sweep, message):
  with pytest.raises(UserError, match=message):
    api.run(config, str(tmp_path / "sweep"), sweep=sweep, quiet=True)
  assert not (tmp_path / "sweep").exists()


def test_loading_a_directory_that_holds_no_sweep_says_so(tmp_path):
  with pytest.raises(UserError, match="holds no sweep.json"):
    api.load(str(tmp_path))


# A stand-in for launch.py: each run writes the metrics of a known answer (top-1 0.5, + 0.1 for
# gelu, + 0.01 per seed) and its own command line, and exits 0.
FAKE_LAUNCH = textwrap.dedent("""\
    import json, os, sys
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    top1 = (0.5 + 0.01 * int(args["config.seed"])
            + 0.1 * (args.get("config.model_options.activation") == "gelu"))
    os.makedirs(args["workdir"], exist_ok=True)
    with open(os.path.join(args["workdir"], "metrics.jsonl"), "w") as f:
      f.write(json.dumps({"step": 7, "train/loss": 1.0 - top1}) + "\\n")
      f.write(json.dumps({"step": 7, "eval/top1": top1, "eval/loss": 2.0 - top1}) + "\\n")
    with open(os.path.join(args["workdir"], "argv.json"), "w") as f:
      json.dump(sys.argv[1:], f)
""")


@pytest.fixture
def fake_launch(tmp_path, monkeypatch):
  path = tmp_path / "launch.py"
  path.write_text(FAKE_LAUNCH)
  monkeypatch.setattr(api, "launch_script", lambda: str(path))
  # the stand-in is a plain script, one run per process: a runner that also has warm worker
  # processes (issue 20's) is asked for that mode
  if "warm" in inspect.signature(runner.run).parameters:
    monkeypatch.setattr(runner, "run", functools.partial(runner.run, warm=False))


def attempts(run_dir):
  with open(os.path.join(run_dir, store.LOG)) as f:
    return sum(line.startswith("=== attempt") for line in f)


@pytest.mark.e2e  # child processes (a few lines of Python each)
def test_a_configdict_sweep_runs_each_point_and_seed_and_returns_its_statistics(
    tmp_path, fake_launch):
  del fake_launch
  workdir = str(tmp_path / "sweep")
  results = api.run(lenet(), workdir, sweep=ACTIVATIONS, workers=2, quiet=True)
  assert [(r.variant, r.seed, r.status) for r in results.rows] == [
      ("activation=relu", 0, "done"), ("activation=relu", 1, "done"),
      ("activation=gelu", 0, "done"), ("activation=gelu", 1, "done")]
  assert results.values("eval/top1") == {"activation=relu": {0: 0.5, 1: 0.51},
                                         "activation=gelu": {0: 0.6, 1: 0.61}}
  assert results.rows[3].finals["train/loss"] == pytest.approx(0.39) and not results.failed
  gelu = results.summary[1]
  assert gelu["variant"] == "activation=gelu" and gelu["n"] == 2
  assert gelu["eval/top1_mean"] == pytest.approx(0.605)
  assert gelu["eval/top1_diff"] == pytest.approx(0.1)
  assert "activation=gelu" in results.markdown()
  experiment = os.path.join(workdir, api.EXPERIMENT)
  assert spec.config_hash(config_lib.load(experiment)) == results.record.base_hash
  run_dir = os.path.join(workdir, "activation=gelu", "seed=1")
  with open(os.path.join(run_dir, "argv.json")) as f:
    argv = json.load(f)
  assert argv == [f"--config={experiment}", "--config.seed=1",
                  "--config.model_options.activation=gelu", f"--workdir={run_dir}"]
  # the same call again: every run is done, nothing starts, the same results come back
  again = api.run(lenet(), workdir, sweep=ACTIVATIONS, workers=2, quiet=True)
  assert again.rows == results.rows and attempts(run_dir) == 1
  assert api.load(workdir).rows == results.rows


@pytest.mark.e2e  # child processes (a few lines of Python each)
def test_an_experiment_files_sweep_takes_overrides_as_its_command_line_would(tmp_path,
                                                                             fake_launch):
  del fake_launch
  experiment = os.path.join(ROOT, "tests", "sweep", "tiny_sweep.py")
  results = api.run(experiment, str(tmp_path / "sweep"), overrides={"num_steps": 5}, quiet=True)
  assert results.record.cli_overrides == ("--config.num_steps=5",)
  assert results.record.variants == {"activation=relu": {"model_options.activation": "relu"},
                                     "activation=gelu": {"model_options.activation": "gelu"}}
  assert len(results.rows) == 4 and all(r.status == "done" for r in results.rows)
  with open(tmp_path / "sweep" / results.rows[0].workdir / "argv.json") as f:
    assert json.load(f)[:3] == [f"--config={experiment}", "--config.num_steps=5",
                                "--config.seed=0"]
  with pytest.raises(UserError, match="also a sweep axis"):
    api.run(experiment, str(tmp_path / "other"), quiet=True,
            overrides={"model_options.activation": "elu"})
