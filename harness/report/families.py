"""Families of comparisons: across-task summaries (Wilcoxon), Holm correction, resample counts, marks.

One variant's per-task deltas are summarised over tasks (each task counts once); the p-values of a
family (the variants of a recipe against its control) are Holm-corrected; the marks the report and
the leaderboard print are read off the corrected p.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from harness.report.paired import _as_scores, _bootstrap_means, _check_resampling, _percentile_bounds

#: ``resamples_for_family`` aims the smallest Holm-adjusted resampling p at or below this: 2.5x under the
#: *** threshold (0.001), so a clear effect reaches *** with a few resamples beyond the observed delta.
HOLM_P_FLOOR = 4e-4
#: ... and never uses fewer resamples than this (percentile CIs need a few thousand to be stable).
MIN_RESAMPLES = 10_000


@dataclass(frozen=True)
class AcrossTasks:
    """Per-task deltas summarised over tasks."""

    n_tasks: int
    mean_delta: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_test: str
    wilcoxon_statistic: float
    p_value: float
    p_test: str
    n_used: int  # tasks in the Wilcoxon test: the non-tied ones
    exact: bool
    p_min: float  # smallest attainable p with n_used tasks: 2^(1-n_used)
    wins: int
    ties: int
    losses: int
    tie_eps: float
    notes: tuple[str, ...] = field(default_factory=tuple)


def signed_rank_exact(differences: object) -> tuple[float, float, bool]:
    """Exact two-sided Wilcoxon signed-rank test of non-zero differences; tied |d| get midranks.

    Without tied |d| this is ``scipy.stats.wilcoxon(d, method="exact")``. With ties scipy's exact
    distribution does not apply (it rounds a midrank statistic, gh-19872) and its tie-aware
    ``PermutationMethod`` enumerates the 2^n sign patterns one by one, so the exact distribution is
    built here: under the null each sign is a fair coin, T+ (the sum of the ranks of the positive
    differences) is distributed as sum_i B_i r_i over all 2^n equally likely patterns, and twice a
    midrank is an integer, so n convolutions with {0, 2 r_i} give it exactly (0.14 s at n = 300; the
    cost grows as n^3). p = 2 min(P(T+ <= t), P(T+ >= t)), capped at 1, scipy's two-sided convention.

    Returns (min(T+, T-) — the statistic scipy reports —, p, whether any |d| were tied).
    """
    from scipy import stats

    d = _as_scores("differences", differences)
    if np.any(d == 0):
        raise ValueError("signed_rank_exact: drop zero differences first (Wilcoxon's zero_method='wilcox')")
    ranks = stats.rankdata(np.abs(d))  # midranks ("average") for ties
    doubled = np.rint(2 * ranks).astype(np.int64)
    if np.unique(doubled).size == doubled.size:
        result = stats.wilcoxon(d, method="exact")
        return float(result.statistic), float(result.pvalue), False
    dist = np.zeros(int(doubled.sum()) + 1)
    dist[0], top = 1.0, 0
    for r in doubled:  # cells above ``top`` are still zero: touch only the support so far
        shifted = 0.5 * dist[:top + 1]
        dist[:top + 1] *= 0.5
        dist[r:r + top + 1] += shifted
        top += int(r)
    t_plus = int(doubled[d > 0].sum())
    p_value = min(1.0, 2 * min(float(dist[:t_plus + 1].sum()), float(dist[t_plus:].sum())))
    return min(t_plus, top - t_plus) / 2, p_value, True


def across_tasks(deltas: Mapping[str, float], *, seed: int = 0, n_resamples: int = 10_000,
                 confidence: float = 0.95, tie_eps: float = 1e-9) -> AcrossTasks:
    """Summarise one variant's per-task deltas: mean, bootstrap CI over tasks, Wilcoxon, win/tie/loss.

    Each task counts once (the unit here is the task). |delta| < tie_eps is a tie; ties are dropped
    before the Wilcoxon signed-rank test (Wilcoxon's own rule), so "tie" means the same thing in the
    counts and in the test, and the test stays exact (``signed_rank_exact``: midranks for equal |delta|).
    The test name says how many tasks it used and how many zeros it dropped.
    """
    _check_resampling(n_resamples, confidence)

    names = list(deltas)
    values = np.array([float(deltas[k]) for k in names], dtype=float)
    bad = [k for k, x in zip(names, values) if not math.isfinite(x)]
    if bad:
        raise ValueError(f"non-finite delta for task(s) {bad}; tasks are never dropped silently")
    if values.size == 0:
        raise ValueError("across_tasks: no tasks given")
    values = np.where(np.abs(values) < tie_eps, 0.0, values)
    wins, losses = int(np.count_nonzero(values > 0)), int(np.count_nonzero(values < 0))
    ties = values.size - wins - losses
    n_used = wins + losses
    notes: list[str] = []

    boot = _bootstrap_means(values, n_resamples, seed)
    low, high = _percentile_bounds(boot, confidence)
    if values.size < 10:
        notes.append(f"only {values.size} tasks: the bootstrap CI over tasks is rough")

    dropped = f"{n_used} of {values.size} tasks, {ties} zero Δ dropped"
    p_min = min(1.0, 2.0 ** (1 - n_used)) if n_used else 1.0
    if values.size < 2:
        statistic, p_value, exact = math.nan, math.nan, False
        p_test = "Wilcoxon signed-rank (not run: fewer than 2 tasks)"
        notes.append("fewer than 2 tasks: no across-task test")
    elif n_used == 0:
        statistic, p_value, exact = 0.0, 1.0, True
        p_test = f"Wilcoxon signed-rank (two-sided; {dropped}: p = 1)"
        notes.append("every task is a tie: p set to 1")
    else:
        statistic, p_value, tied = signed_rank_exact(values[values != 0])
        exact = True
        p_test = (f"Wilcoxon signed-rank (two-sided, exact over all 2^{n_used} sign patterns"
                  f"{', midranks for tied |Δ|' if tied else ''}; {dropped})")
        if p_min > 0.05:
            notes.append(f"with {n_used} non-tied tasks the smallest attainable Wilcoxon p is "
                         f"{p_min:.3g}: it cannot reach 0.05")
    return AcrossTasks(n_tasks=values.size, mean_delta=float(values.mean()), ci_low=low, ci_high=high,
                       confidence=confidence,
                       ci_test=f"bootstrap over tasks (percentile, {n_resamples} resamples)",
                       wilcoxon_statistic=statistic, p_value=p_value, p_test=p_test, n_used=n_used, exact=exact,
                       p_min=p_min, wins=wins, ties=ties, losses=losses, tie_eps=tie_eps, notes=tuple(notes))


def resamples_for_family(family_size: int) -> int:
    """Resamples that let the strongest comparison of a Holm family of ``family_size`` reach ***.

    A resampling p is at least 2/(B+1) and Holm multiplies the smallest p of m comparisons by m, so the
    smallest reportable adjusted p is 2m/(B+1). B is the smallest multiple of 1000, at least
    MIN_RESAMPLES, with 2m/(B+1) <= HOLM_P_FLOOR: 10 000 for m <= 2, then 5 000 m (15 000 for 3).
    The report's cost grows with m x B, i.e. as m^2: about 1 s per comparison on 3 000 units at m = 3.
    """
    if family_size < 1:
        raise ValueError(f"family_size must be >= 1, got {family_size}")
    needed = math.ceil(2 * family_size / HOLM_P_FLOOR - 1)
    return max(MIN_RESAMPLES, -(-needed // 1000) * 1000)


def holm_p_min(p_min: float, family_size: int) -> float:
    """The smallest Holm-adjusted p a comparison can reach: its own smallest p times the family size."""
    return min(1.0, family_size * p_min)


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (family-wise error), same keys; the family is the mapping.

    Hand-written because scipy only ships Benjamini-Hochberg (``false_discovery_control``, which
    controls the false discovery rate, not the family-wise error), and statsmodels is not a dependency.
    Step-down: sort ascending, multiply the i-th smallest (0-based) by (m - i), take running maxima so
    adjusted p's keep the raw order, cap at 1.
    """
    names = list(p_values)
    raw = np.array([float(p_values[k]) for k in names], dtype=float)
    bad = [k for k, p in zip(names, raw) if not 0 <= p <= 1]
    if bad:
        raise ValueError(f"holm: p-values must be in [0, 1] (no NaN), bad for {bad}; decide what to do "
                         "with untestable comparisons before correcting")
    order = np.argsort(raw, kind="stable")
    scaled = raw[order] * (len(raw) - np.arange(len(raw)))
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    return {names[i]: float(p) for i, p in zip(order, adjusted)}


def significance_mark(p: float, alpha: float = 0.05) -> str:
    """"***" if p < alpha/50, "**" if p < alpha/5, "*" if p < alpha, else "" (also for nan).

    With the default alpha = 0.05 these are the conventional 0.001 / 0.01 / 0.05 thresholds. Pass the
    Holm-adjusted p when the comparison belongs to a family.
    """
    if p is None or not math.isfinite(p):
        return ""
    if p < alpha / 50:
        return "***"
    if p < alpha / 5:
        return "**"
    if p < alpha:
        return "*"
    return ""
