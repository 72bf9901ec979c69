"""Resume's refusals: the keys that must not change, and the one-line tree mismatch."""

import json
import os

import pytest

from cnnjax import config as config_lib, files
from cnnjax.errors import UserError
from cnnjax.train import resume


def _as_json(config):
  return json.loads(config.to_json_best_effort())


@pytest.fixture
def workdir(tmp_path):
  files.write_json(os.path.join(str(tmp_path), files.CONFIG), _as_json(config_lib.defaults()))
  return str(tmp_path)


def _changed(values):
  return _as_json(config_lib.with_values(config_lib.defaults(), values))


def test_the_saved_config_is_flat_dotted_keys(workdir):
  saved = resume.saved_config(workdir)
  assert saved["optimizer.name"] == "adam" and saved["data.max_shift"] == 0
  assert saved["schedule.decay_epochs"] == [] and "model_options.activation" in saved
  assert resume.saved_config(os.path.join(workdir, "none")) is None


def test_keys_outside_the_resume_keys_may_change(workdir):
  resume.check_config(workdir, _changed({"log_every_steps": 7, "optimizer.learning_rate": 0.1}))


def test_a_changed_resume_key_is_refused_naming_it(workdir):
  with pytest.raises(UserError) as e:
    resume.check_config(workdir, _changed({"batch_size": 64, "log_every_steps": 7}))
  assert str(e.value) == (f"{workdir} holds a run with config.batch_size=128, not 64: resuming "
                          "needs the same batch_size; use a new --workdir (or config.init_from "
                          "to start from its weights).")
  with pytest.raises(UserError, match=r"config.finetune.mode='full', not 'freeze': resuming "
                                      r"needs the same finetune;"):
    resume.check_config(workdir, _changed({"finetune.mode": "freeze"}))
  resume.check_config(workdir, _changed({"batch_size": 64}), keys=resume.MODEL_KEYS)


def test_a_tree_mismatch_names_the_paths_and_the_keys_that_cause_them(workdir):
  differences = [f"params/Conv_{i}/kernel is float32[5, 5, 1, 6] in the checkpoint, "
                 "float32[5, 5, 3, 6] here" for i in range(5)]
  error = resume.mismatch(workdir, _changed({"data.channels": 3}), 40, differences)
  assert str(error) == (
      f"checkpoint step 40 in {workdir}/checkpoints doesn't fit this config: "
      f"{'; '.join(differences[:3])} (and 2 more); caused by config.data.channels (None there, "
      "3 here). Use the config that wrote it, or a new --workdir.")
  error = resume.mismatch(workdir, _changed({}), 40, ["opt_state/0/mu is not in the checkpoint"])
  assert "caused by one of config.optimizer, config.finetune, config.model, " in str(error)
