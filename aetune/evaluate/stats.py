"""The statistics behind the leaderboard's intervals and the findings' claims.

- A pick's estimate is the mean over its repeats (its own run was the best of many trials: it overstates it), with
  the half-width of a 95 % Student t confidence interval (n - 1 degrees of freedom).
- Two sides differ when Welch's two-sided t-test (unequal variances) rejects equal means at 5 % after Holm's
  correction over the comparisons of one finding. A side that is one deterministic number (a PCA baseline) is a
  constant: the test is then the one-sample t-test of the other side against it. A side that is one training run
  cannot be tested: "one run; not tested".
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95  # confidence of the intervals
ALPHA = 0.05  # family-wise error rate of a finding's comparisons (Holm)
TEST = "Welch's t-test, Holm-corrected over the finding's comparisons, 5% level"


@dataclass(frozen=True)
class Estimate:
    mean: float
    half_width: float | None  # None with fewer than two values
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4g}" + (f" ± {self.half_width:.2g}" if self.half_width is not None else "")


def estimate(values: Sequence[float]) -> Estimate:
    """Mean and 95 % t-interval half-width of the values (repeats of one config, one split)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, float(stats.t.ppf((1 + LEVEL) / 2, n - 1)) * sd / math.sqrt(n), n)


def p_value(a: Sequence[float], b: Sequence[float], b_fixed: bool = False) -> float | None:
    """Two-sided p-value that a and b have equal means: Welch's t-test; against a constant b (b_fixed, one value)
    the one-sample t-test. None when a side is a single run (untestable). Identical runs: 1 (no difference) or 0."""
    if len(a) < 2 or (len(b) < 2 and not b_fixed):
        return None
    if b_fixed:
        result = stats.ttest_1samp(list(a), b[0])
    else:
        result = stats.ttest_ind(list(a), list(b), equal_var=False)
    p = float(result.pvalue)
    if math.isnan(p):  # no spread on either side: the means are equal or they are not
        return 1.0 if estimate(a).mean == estimate(b).mean else 0.0
    return p


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None: untested comparisons are not counted)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running, m = 0.0, len(tested)
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(adjusted: float | None, a: Sequence[float], b: Sequence[float], mode: str = "min") -> str:
    """'better', 'worse', 'indistinguishable' (a vs b, lower is better under mode min) or 'untested'."""
    if adjusted is None:
        return "untested"
    if adjusted >= ALPHA:
        return "indistinguishable"
    lower = estimate(a).mean < estimate(b).mean
    return "better" if lower == (mode == "min") else "worse"
