"""The statistics of a summary: mean, sample standard deviation, a t interval, Welch's and the
paired t-test against the baseline, and Holm's correction over the comparisons.

The paired test is valid here because a run's data order and initialisation depend only on its
seed: seed s of two variants sees the same batches in the same order.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats


@dataclasses.dataclass(frozen=True)
class ValueSummary:
  n: int
  mean: float
  std: float  # sample standard deviation (ddof=1); nan for n < 2
  ci_low: float
  ci_high: float


def summarize_values(values: Sequence[float], confidence: float = 0.95) -> ValueSummary:
  """Mean, sample std and the t-distribution confidence interval of the mean."""
  x = np.asarray(values, np.float64)
  n = len(x)
  if n == 0:
    return ValueSummary(0, math.nan, math.nan, math.nan, math.nan)
  mean = float(x.mean())
  if n < 2:
    return ValueSummary(n, mean, math.nan, math.nan, math.nan)
  std = float(x.std(ddof=1))
  half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
  return ValueSummary(n, mean, std, mean - half, mean + half)


def welch(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sided p-value of Welch's t-test (unequal variances); nan where it is undefined."""
  if len(a) < 2 or len(b) < 2:
    return math.nan
  with warnings.catch_warnings():  # identical values: scipy warns, and the p-value is nan
    warnings.simplefilter("ignore", RuntimeWarning)
    return float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[float, int]:
  """Two-sided p-value of the paired t-test over the seeds both have, and how many they are."""
  seeds = sorted(set(a) & set(b))
  if len(seeds) < 2:
    return math.nan, len(seeds)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    p = scipy_stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue
  return float(p), len(seeds)


def holm(pvalues: Sequence[float]) -> list[float]:
  """Holm's step-down adjusted p-values (family-wise error); nan entries stay nan and are not
  counted in the family."""
  index = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
  order = sorted(index, key=lambda i: pvalues[i])
  m, running = len(order), 0.0
  adjusted = [math.nan] * len(pvalues)
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * pvalues[i]))
    adjusted[i] = running
  return adjusted
