"""Variant vs control with several training seeds per arm: the two-level t-test.

Model per task (arm a, seed s, unit u), the one ``power`` plans with:

    y[a, s, u] = mu_a + theta_u + delta[a, u] + g[a, s] + r[a, s, u]

Unit difficulty ``theta`` cancels in the paired difference; the arm x unit interaction ``delta`` is
unit noise (variance ``unit_var`` of the paired difference, shared by all seeds); ``g`` is a seed's
shift of a whole arm (``seed_var``), ``r`` the seed x unit residual (``resid_var``). The estimate
Δ = mean(variant seeds and units) - mean(control seeds and units) has

    Var(Δ) = unit_var / n + h (seed_var + resid_var / n),   h = 1/k_c + 1/k_v.

**Two-level t-test.** The seed term is estimated by the pooled variance S² of the seed means within
each arm (degrees of freedom k_c - 1 + k_v - 1: it holds g and the residual's mean over units); the
unit term by var(d_u) - h·MS_resid, with d_u the seed-averaged paired differences and MS_resid the
residual mean square of the arms' seeds x units tables (both precise: ~n degrees of freedom). So
SE² = h S² + max(0, var(d) - h MS_resid) / n, t = Δ / SE, and the CI is Δ ± t_{df} SE from the same SE,
so CI and p always agree. df is Satterthwaite's, with one guard: the seed term enters the df at its
upper 75 % confidence bound (S² (k-2)/χ²_{0.25, k-2}, k = seeds of both arms). Plain Satterthwaite is
liberal with 2 seeds per arm (6-8 % false positives at α = 0.05) because a small S² draw both shrinks
SE and raises df; with the guard the false-positive rate stays within 3.6-5.3 % for 2, 3 and 5 seeds
per arm, seed sd 0 to 5x the unit standard error, residual-only to unit-dominated noise
(``bench/bench_seed_calibration.py`` prints the table; ``tests/test_seed_calibration.py`` checks a subset).

The previous test (a two-level bootstrap resampling k seeds with replacement) shrank the seed variance
by (k-1)/k and read p off the bootstrap distribution: 27 % false positives at k = 2 (issue 20).
With one seed per arm nothing estimates seed variance: the comparison falls back to the unit-level
paired test and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harness.report.paired import UnitComparison, _as_scores, _check_resampling, compare_units

#: The seed-level mean square enters Satterthwaite's df at this lower chi-square quantile (an upper
#: confidence bound of the seed variance): the guard that keeps the test's level with 2-3 seeds per arm.
SEED_DF_QUANTILE = 0.25
TWO_LEVEL_TEST = ("two-level t-test (pooled seed-mean variance + unit noise; Satterthwaite df with the seed "
                  "term at its 75% upper bound)")


@dataclass(frozen=True)
class TwoLevel:
    """The two-level t-test's pieces (score units): Δ, its SE and df, and the variance parts behind them."""

    delta: float
    standard_error: float
    df: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    seed_term: float  # h S²: variance of Δ from seeds (with the residual's mean over units)
    unit_term: float  # max(0, var(d) - h MS_resid) / n: variance of Δ from the unit sample
    seed_df: int


@dataclass(frozen=True)
class SeedComparison:
    """Variant vs control with several training seeds per arm; the p-value includes seed variance."""

    n_units: int
    n_seeds_control: int
    n_seeds_variant: int
    control_seed_means: tuple[float, ...]
    variant_seed_means: tuple[float, ...]
    control_seed_std: float  # std (ddof=1) of per-seed means: the between-seed spread; nan for 1 seed
    variant_seed_std: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    test: str
    p_min: float  # smallest attainable p of ``test`` (0 for the t-test: not a resampling floor)
    query_noise_only: UnitComparison  # the same comparison on seed-averaged units, ignoring seed variance
    standard_error: float = math.nan
    df: float = math.nan
    note: str = ""


def seed_matrix(arm: str, runs: Sequence[object]) -> np.ndarray:
    """One arm's (seeds x units) scores; every seed scored on the same units."""
    if len(runs) == 0:
        raise ValueError(f"{arm}: no seeds given")
    arrays = [_as_scores(f"{arm} seed #{i}", run) for i, run in enumerate(runs)]
    sizes = {a.size for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"{arm}: seeds have different numbers of units {[a.size for a in arrays]}; "
                         "every seed must be scored on the same units in the same order")
    return np.vstack(arrays)


def pooled_seed_parts(matrices: Sequence[np.ndarray]) -> tuple[float, int, float, int]:
    """(S², its df, MS_resid, its df) pooled over the arms with >= 2 seeds (sums of squares over df).

    S² is the within-arm variance of seed means (estimates seed_var + resid_var / n); MS_resid the
    residual mean square of each arm's seeds x units table (estimates resid_var).
    """
    ss_seed = ss_resid = 0.0
    df_seed = df_resid = 0
    for m in matrices:
        k, n = m.shape
        if k < 2:
            continue
        seed_means, unit_means, grand = m.mean(axis=1), m.mean(axis=0), m.mean()
        ss_seed += float(((seed_means - grand) ** 2).sum())
        ss_resid += float(((m - seed_means[:, None] - unit_means[None, :] + grand) ** 2).sum())
        df_seed += k - 1
        df_resid += (k - 1) * (n - 1)
    if df_seed == 0:
        return math.nan, 0, math.nan, 0
    return ss_seed / df_seed, df_seed, ss_resid / max(df_resid, 1), df_resid


def two_level_df(seed_term: float, seed_df: int, unit_term: float, unit_df: int) -> float:
    """Satterthwaite's df for seed_term + unit_term, the seed term at its upper 75 % bound (module doc)."""
    from scipy import stats

    guarded = seed_term * seed_df / float(stats.chi2.ppf(SEED_DF_QUANTILE, seed_df))
    denominator = guarded**2 / seed_df + unit_term**2 / max(unit_df, 1)
    if denominator <= 0:
        return float(unit_df)
    return float((guarded + unit_term) ** 2 / denominator)


def contrast_test(matrices: Sequence[np.ndarray], weights: Sequence[float], *,
                  confidence: float = 0.95) -> TwoLevel:
    """The two-level t-test of a contrast sum_c w_c mean(cell c) = 0 over cells scored on the same units.

    Each cell is a (seeds x units) matrix. SE² = sum_c w_c² S² / k_c + max(0, var(d) - sum_c w_c² / k_c
    MS_resid) / n with d_u = sum_c w_c (seed-averaged cell c at u), S² and MS_resid pooled over the cells
    with >= 2 seeds; df as ``two_level_df``. Variant vs control is the contrast (-1, +1); a grid's main
    effects and interactions are other contrasts (``factorial``).
    """
    from scipy import stats

    cells = [np.atleast_2d(np.asarray(m, dtype=float)) for m in matrices]
    if len(cells) != len(weights):
        raise ValueError(f"{len(cells)} cells but {len(weights)} weights")
    n = cells[0].shape[1]
    if any(m.shape[1] != n for m in cells):
        raise ValueError(f"cells have {[m.shape[1] for m in cells]} units; every cell must be scored on the same "
                         "units")
    if n < 2:
        raise ValueError("the two-level t-test needs at least 2 units")
    s2, seed_df, ms_resid, _ = pooled_seed_parts(cells)
    if seed_df == 0:
        raise ValueError("the two-level t-test needs at least 2 seeds in one arm")
    h = float(sum(w**2 / m.shape[0] for w, m in zip(weights, cells, strict=True)))
    d = sum(w * m.mean(axis=0) for w, m in zip(weights, cells, strict=True))
    delta = float(np.mean(d))
    seed_term = h * s2
    unit_term = max(0.0, float(np.var(d, ddof=1)) - h * ms_resid) / n
    df = two_level_df(seed_term, seed_df, unit_term, n - 1)
    se = math.sqrt(seed_term + unit_term)
    if se == 0:
        p_value = 1.0 if delta == 0 else 0.0
        low = high = delta
    else:
        p_value = float(2 * stats.t.sf(abs(delta) / se, df))
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
        low, high = delta - half, delta + half
    return TwoLevel(delta=delta, standard_error=se, df=df, ci_low=low, ci_high=high, confidence=confidence,
                    p_value=p_value, seed_term=seed_term, unit_term=unit_term, seed_df=seed_df)


def two_level_test(control: np.ndarray, variant: np.ndarray, *, confidence: float = 0.95) -> TwoLevel:
    """The two-level t-test of Δ = 0 on (seeds x units) matrices; at least one arm needs 2 seeds."""
    c, v = np.atleast_2d(control), np.atleast_2d(variant)
    if c.shape[1] != v.shape[1]:
        raise ValueError(f"control has {c.shape[1]} units but the variant {v.shape[1]}; both arms must be "
                         "scored on the same units")
    return contrast_test([c, v], [-1.0, 1.0], confidence=confidence)


def compare_seeds(control: Sequence[object], variant: Sequence[object], *, seed: int = 0,
                  n_resamples: int = 10_000, confidence: float = 0.95) -> SeedComparison:
    """Compare arms trained with several seeds each, counting seed-to-seed variance as noise.

    The two-level t-test (module docstring). ``query_noise_only`` is always the unit-level test on
    seed-averaged scores (``compare_units`` on them), so a report can show how much of an apparent
    effect survives seed variance; with one seed per arm it *is* the result, and ``test`` says so.
    """
    return compare_seeds_family(control, {"variant": variant}, seed=seed, n_resamples=n_resamples,
                                confidence=confidence)["variant"]


def compare_seeds_family(control: Sequence[object], variants: Mapping[str, Sequence[object]], *, seed: int = 0,
                         n_resamples: int = 10_000, confidence: float = 0.95) -> dict[str, SeedComparison]:
    """``compare_seeds`` for every variant against one control (each comparison pools only its two arms)."""
    _check_resampling(n_resamples, confidence)
    c = seed_matrix("control", control)
    arms = {name: seed_matrix(str(name), runs) for name, runs in variants.items()}
    if not arms:
        raise ValueError("compare_seeds_family: no variants given")
    for name, v in arms.items():
        if v.shape[1] != c.shape[1]:
            raise ValueError(f"control seeds have {c.shape[1]} units but {name} seeds have {v.shape[1]}; "
                             "both arms must be scored on the same units")
    control_means = c.mean(axis=1)
    out: dict[str, SeedComparison] = {}
    for name, v in arms.items():
        variant_means = v.mean(axis=1)
        query_noise = compare_units(c.mean(axis=0), v.mean(axis=0), seed=seed, n_resamples=n_resamples,
                                    confidence=confidence)
        common = dict(n_units=c.shape[1], n_seeds_control=c.shape[0], n_seeds_variant=v.shape[0],
                      control_seed_means=tuple(control_means.tolist()),
                      variant_seed_means=tuple(variant_means.tolist()),
                      control_seed_std=float(control_means.std(ddof=1)) if c.shape[0] > 1 else math.nan,
                      variant_seed_std=float(variant_means.std(ddof=1)) if v.shape[0] > 1 else math.nan,
                      confidence=confidence, query_noise_only=query_noise)
        if c.shape[0] == 1 and v.shape[0] == 1:
            out[name] = SeedComparison(
                delta=query_noise.delta, ci_low=query_noise.ci_low, ci_high=query_noise.ci_high,
                p_value=query_noise.p_value, p_min=query_noise.p_min,
                test=f"{query_noise.ci_test} + {query_noise.p_test} — one seed per arm: query noise only, "
                     "seed variance not estimated",
                note="one training seed per arm: differences between seeds are not accounted for", **common)
            continue
        result = two_level_test(c, v, confidence=confidence)
        note = ("one arm has a single seed: the seed variance comes from the other arm alone"
                if min(c.shape[0], v.shape[0]) == 1 else "")
        out[name] = SeedComparison(
            delta=result.delta, ci_low=result.ci_low, ci_high=result.ci_high, p_value=result.p_value, p_min=0.0,
            test=f"{TWO_LEVEL_TEST}, df={result.df:.1f}", standard_error=result.standard_error, df=result.df,
            note=note, **common)
    return out
