"""The summary of hand-made rows, in-process: means, stds, intervals and differences by hand, the
p-values from scipy's own tests and Holm's correction by hand, summary.md's rows, the mean curves
and the whole report of a hand-written sweep directory (plots drawn without pyplot)."""

import json
import math
import os
import sys

import pytest
from scipy import stats as scipy_stats

from cnnjax import files
from cnnjax.sweep import report, results, store

# eval/top1 of seeds 0, 1, 2; "a" is the baseline.
VALUES = {"a": [0.90, 0.92, 0.94], "b": [0.93, 0.96, 0.96], "c": [0.91, 0.93, 0.96]}
T_975_2 = 4.302652729749462  # t(0.975, df=2)


def _rows():
  rows = [results.ResultRow(v, s, store.trial_dir(v, s), "done", {"eval/top1": x}, params=61706,
                            images_per_sec=250.0, wall_s=10.0 + s)
          for v, xs in VALUES.items() for s, x in enumerate(xs)]
  return rows + [results.ResultRow("c", 3, "c/seed=3", "failed", exit_code=3)]


def _record(trials=()):
  return store.SweepRecord(tuple(trials), {"a": {}, "b": {"k": 1}, "c": {"k": 2.5e-4}},
                           "eval/top1", "a", "h", "tiny.py")


def test_means_stds_intervals_and_differences_by_hand():
  summary = {s["variant"]: s for s in report.summary_rows(_record(), _rows())}
  a, b, c = summary["a"], summary["b"], summary["c"]
  assert (a["n"], a["runs"], c["n"], c["runs"]) == (3, 3, 3, 4)
  assert a["baseline"] and not b["baseline"]
  assert a["eval/top1_mean"] == pytest.approx(0.92) and b["eval/top1_mean"] == pytest.approx(0.95)
  assert a["eval/top1_std"] == pytest.approx(0.02)  # sqrt((0.02² + 0 + 0.02²) / 2)
  assert b["eval/top1_std"] == pytest.approx(math.sqrt(0.0006 / 2))
  half = T_975_2 * 0.02 / math.sqrt(3)
  assert (a["eval/top1_ci_low"], a["eval/top1_ci_high"]) == pytest.approx((0.92 - half,
                                                                            0.92 + half))
  assert b["eval/top1_diff"] == pytest.approx(0.03) and a["eval/top1_diff"] == 0.0
  assert c["eval/top1_diff"] == pytest.approx((0.91 + 0.93 + 0.96) / 3 - 0.92)
  assert (b["params"], b["images_per_sec_mean"], b["wall_s_mean"]) == (61706, 250.0, 11.0)
  assert (a["config_diff"], b["config_diff"], c["config_diff"]) == ("(base)", "k=1",
                                                                     "k=0.00025")


def test_p_values_and_holm_against_the_baseline():
  summary = {s["variant"]: s for s in report.summary_rows(_record(), _rows())}
  welch = {v: scipy_stats.ttest_ind(VALUES[v], VALUES["a"], equal_var=False).pvalue
           for v in "bc"}
  paired = {v: scipy_stats.ttest_rel(VALUES[v], VALUES["a"]).pvalue for v in "bc"}
  for v in "bc":
    assert summary[v]["eval/top1_p_welch"] == pytest.approx(welch[v], rel=1e-12)
    assert summary[v]["eval/top1_p_paired"] == pytest.approx(paired[v], rel=1e-12)
  # Holm over the 2 comparisons: the smaller p times 2, the larger times 1, never below the
  # one before it. Welch: b 0.122 < c 0.514; paired: b 0.035 < c 0.057, and c keeps b's 0.070.
  assert summary["b"]["eval/top1_p_welch_holm"] == pytest.approx(2 * welch["b"])
  assert summary["c"]["eval/top1_p_welch_holm"] == pytest.approx(welch["c"])
  assert summary["b"]["eval/top1_p_paired_holm"] == pytest.approx(2 * paired["b"])
  assert summary["c"]["eval/top1_p_paired_holm"] == pytest.approx(2 * paired["b"])
  assert math.isnan(summary["a"]["eval/top1_p_welch"]) and math.isnan(
      summary["a"]["eval/top1_p_paired_holm"])


def test_markdown_has_the_baseline_row_and_the_differences():
  text = report.markdown(_record(), report.summary_rows(_record(), _rows()))
  lines = text.splitlines()
  assert lines[0].startswith("Sweep of `tiny.py`, metric `eval/top1`, baseline `a`")
  assert lines[2] == ("| variant | n | eval/top1 mean ± std | 95% CI | Δ vs baseline | "
                      "p Welch (Holm) | p paired (Holm) | eval/loss mean ± std | params | img/s | "
                      "config |")
  assert lines[4] == ("| a (baseline) | 3/3 | 0.9200 ± 0.0200 | [0.8703, 0.9697] | – | – | – | "
                      "– | 61,706 | 250 | `(base)` |")
  assert lines[5] == ("| b | 3/3 | 0.9500 ± 0.0173 | [0.9070, 0.9930] | +0.0300 | 0.245 | "
                      "0.070 | – | 61,706 | 250 | `k=1` |")
  assert lines[6].startswith("| c | 3/4 |")


def test_mean_curves_are_the_steps_every_seed_logged():
  logs = {"a": [[{"step": 1, "train/loss": 2.0}, {"step": 2, "train/loss": 1.0, "eval/top1": 0.5}],
                [{"step": 1, "train/loss": 4.0}, {"step": 2, "train/loss": 3.0}]]}
  assert report.mean_curves(logs) == {"a": {1: {"train/loss": 3.0}, 2: {"train/loss": 2.0}}}


def test_the_whole_report_of_a_sweep_directory(tmp_path):
  before = "matplotlib.pyplot" in sys.modules
  trials = [store.Trial(v, s, {}, "h", store.trial_dir(v, s)) for v in VALUES for s in range(3)]
  for trial, (variant, seed) in zip(trials, [(v, s) for v in VALUES for s in range(3)]):
    run_dir = trial.run_dir(str(tmp_path))
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, files.METRICS), "w") as f:
      for step in (10, 20):
        f.write(json.dumps({"step": step, "train/loss": 1.0 / step + seed}) + "\n")
      f.write(json.dumps({"step": 20, "eval/top1": VALUES[variant][seed]}) + "\n")
    store.write_result(run_dir, store.TrialResult("done", "h", 0, 1, wall_s=5.0))
    files.write_json(os.path.join(str(tmp_path), variant, "model.json"), {"params": 7, "macs": 9})
  summary = report.write_all(str(tmp_path), _record(trials))
  assert [s["variant"] for s in summary] == ["a", "b", "c"]
  for name in ("curves.png", "final.png"):
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "| a (baseline) | 3/3 |" in (tmp_path / "summary.md").read_text()
  assert (tmp_path / "summary.csv").read_text().splitlines()[0].startswith(
      "variant,n,runs,baseline,eval/top1_ci_high")
  assert len((tmp_path / "results.csv").read_text().splitlines()) == 10
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "a" / "mean"))
  assert ("matplotlib.pyplot" in sys.modules) == before  # drawn without pyplot's state
  assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
