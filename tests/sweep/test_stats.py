"""The summary's statistics against hand-computed numbers and scipy's own formulas."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cnnjax.sweep import report, results, stats, store


def test_summarize_values_is_the_sample_std_and_a_t_interval():
  d = stats.summarize_values([1.0, 2.0, 3.0, 4.0, 5.0])
  assert d.n == 5 and d.mean == 3.0
  assert d.std == pytest.approx(math.sqrt(2.5))  # ddof = 1
  half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, df=4)
  assert (d.ci_low, d.ci_high) == pytest.approx((3 - half, 3 + half))
  one = stats.summarize_values([0.9])
  assert one.mean == 0.9 and math.isnan(one.std) and math.isnan(one.ci_low)


def test_welch_matches_its_formula():
  a, b = [0.981, 0.978, 0.975, 0.980, 0.983], [0.970, 0.979, 0.962, 0.975, 0.968, 0.971]
  va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
  t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
  df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  assert stats.welch(a, b) == pytest.approx(2 * scipy_stats.t.sf(abs(t), df), rel=1e-10)
  assert math.isnan(stats.welch([1.0], b))


def test_paired_uses_the_common_seeds_only():
  a = {0: 0.90, 1: 0.92, 2: 0.91, 3: 0.95}
  b = {0: 0.89, 1: 0.90, 2: 0.905, 7: 0.5}
  d = np.array([0.01, 0.02, 0.005])
  t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
  p, n = stats.paired(a, b)
  assert n == 3 and p == pytest.approx(2 * scipy_stats.t.sf(t, 2), rel=1e-10)


def test_holm_by_hand():
  # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06
  assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
  adjusted = stats.holm([0.01, math.nan, 0.02])  # nan is not counted in the family
  assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])
  assert adjusted[2] == pytest.approx(0.02)


def test_summary_rows_of_known_runs():
  values = {"a": [0.90, 0.92, 0.91], "b": [0.95, 0.97, 0.93], "c": [0.90, 0.91, 0.92]}
  rows = [results.ResultRow(v, s, f"{v}/seed={s}", "done", {"eval/top1": x})
          for v, xs in values.items() for s, x in enumerate(xs)]
  rows.append(results.ResultRow("c", 3, "c/seed=3", "failed"))
  record = store.SweepRecord(trials=(), variants={"a": {}, "b": {"k": 1}, "c": {"k": 2}},
                             metric="eval/top1", baseline="a", base_hash="h", config="x.py")
  summary = {r["variant"]: r for r in report.summary_rows(record, rows)}
  b = summary["b"]
  assert b["n"] == 3 and b["eval/top1_mean"] == pytest.approx(0.95)
  assert b["eval/top1_std"] == pytest.approx(0.02)
  assert b["eval/top1_diff"] == pytest.approx(0.04)
  welch = [stats.welch(values[v], values["a"]) for v in ("b", "c")]
  paired = [scipy_stats.ttest_rel(values[v], values["a"]).pvalue for v in ("b", "c")]
  assert b["eval/top1_p_welch"] == pytest.approx(welch[0])
  assert b["eval/top1_p_paired"] == pytest.approx(paired[0])
  assert b["eval/top1_p_welch_holm"] == pytest.approx(stats.holm(welch)[0])
  assert summary["c"]["n"] == 3 and summary["c"]["runs"] == 4
  assert summary["a"]["eval/top1_diff"] == 0.0 and math.isnan(summary["a"]["eval/top1_p_welch"])
  assert b["config_diff"] == "k=1" and summary["a"]["config_diff"] == "(base)"
