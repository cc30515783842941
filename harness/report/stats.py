"""Honest statistics for "is this variant really better than the control?".

Everything here works on *paired per-unit scores*: one number per query (retrieval), per sentence
(bitext mining), per item (classification) — or, for STS, per-pair predictions whose correlation with
gold is the metric. Pairing matters: both arms are scored on the same units, so unit difficulty cancels
and the tests are far more sensitive than comparing two means.

Conventions (hold for every function):
- delta = variant - control (positive = the variant is better).
- Every result carries the *name* of the test that produced it, for the report.
- Deterministic given ``seed`` (numpy ``default_rng``).
- Nothing is dropped silently: NaN scores or arrays of different lengths raise ``ValueError``.

scipy and pandas are imported inside functions so that importing this module (the CLI does) stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

UnitKind = Literal["mean", "spearman", "pearson"]

#: Up to this many units the randomisation test enumerates all 2^n sign flips (65 536 at n = 16).
EXACT_MAX_UNITS = 16
#: Upper bound on elements per resampling chunk, so 10 000 resamples of 50 000 queries fit in memory.
_CHUNK_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval, and how the interval was obtained."""

    estimate: float
    low: float
    high: float
    confidence: float
    test: str
    n_resamples: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class TestResult:
    """A two-sided p-value for "no difference", and the test that produced it."""

    __test__ = False  # not a pytest test class despite the name

    statistic: float
    p_value: float
    test: str
    n_resamples: int
    exact: bool


@dataclass(frozen=True)
class CorrelationBootstrap:
    """Difference of two correlations with gold; unpacks as ``delta, interval, p_value``."""

    delta: float
    interval: Interval
    p_value: float
    test: str
    control_corr: float
    variant_corr: float
    standard_error: float
    n_degenerate_resamples: int

    def __iter__(self) -> Iterator[object]:
        return iter((self.delta, self.interval, self.p_value))


@dataclass(frozen=True)
class UnitComparison:
    """Variant vs control on one task's paired units (one seed per arm, or seeds already averaged)."""

    kind: str
    n_units: int
    control_value: float  # mean score, or correlation with gold
    variant_value: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_test: str
    p_value: float
    p_test: str
    min_detectable_effect: float
    mde_method: str


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
    query_noise_only: UnitComparison  # the same comparison on seed-averaged units, ignoring seed variance
    note: str = ""


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
    wins: int
    ties: int
    losses: int
    tie_eps: float
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _as_scores(name: str, values: object) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of per-unit scores, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: no units (empty array)")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name}: {bad.size} non-finite score(s) at unit index(es) {bad[:10].tolist()}; "
                         "units are never dropped silently — fix or remove them upstream for both arms")
    return array


def _paired(a: object, b: object, names: tuple[str, str] = ("control", "variant")) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_scores(names[0], a), _as_scores(names[1], b)
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} has {x.size} units but {names[1]} has {y.size}; "
                         "paired tests need both arms scored on the same units in the same order")
    return x, y


def _check_resampling(n_resamples: int, confidence: float | None = None) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if confidence is not None and not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


# --------------------------------------------------------------------------------------------------
# Resampling core
# --------------------------------------------------------------------------------------------------


def _index_chunks(rng: np.random.Generator, n_units: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Bootstrap unit indices, ``rng.integers(0, n, (rows, n))`` in row chunks.

    Chunking bounds memory; successive draws continue one stream, so the concatenation equals a
    single ``rng.integers(0, n, (n_resamples, n))`` call (the test relies on that).
    """
    rows = max(1, _CHUNK_ELEMENTS // n_units)
    for start in range(0, n_resamples, rows):
        yield rng.integers(0, n_units, size=(min(rows, n_resamples - start), n_units))


def _bootstrap_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples of ``values`` (units drawn with replacement)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([values[idx].mean(axis=1) for idx in _index_chunks(rng, values.size, n_resamples)])


def _percentile_bounds(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])  # linear interpolation, as scipy's percentile CI
    return float(low), float(high)


def _bootstrap_p_value(boot: np.ndarray) -> float:
    """Two-sided p for delta = 0 read off a bootstrap distribution of delta.

    p = 2 * min(P*(delta <= 0), P*(delta >= 0)) with the usual +1 correction, so it is never 0 and is
    the smallest alpha whose percentile interval would exclude 0 (CI and p always agree).
    """
    n = boot.size
    below = (np.count_nonzero(boot <= 0) + 1) / (n + 1)
    above = (np.count_nonzero(boot >= 0) + 1) / (n + 1)
    return float(min(1.0, 2 * min(below, above)))


# --------------------------------------------------------------------------------------------------
# One task, paired units
# --------------------------------------------------------------------------------------------------


def paired_bootstrap_ci(a: object, b: object, *, n_resamples: int = 10_000, confidence: float = 0.95,
                        seed: int = 0) -> Interval:
    """Percentile bootstrap CI of delta = mean(b) - mean(a), a = control, b = variant.

    Units are resampled once and the same indices are used for both arms (a paired bootstrap), which
    is the same as bootstrapping the per-unit differences.
    """
    _check_resampling(n_resamples, confidence)
    x, y = _paired(a, b)
    diffs = y - x
    low, high = _percentile_bounds(_bootstrap_means(diffs, n_resamples, seed), confidence)
    return Interval(estimate=float(diffs.mean()), low=low, high=high, confidence=confidence,
                    test=f"paired bootstrap (percentile, {n_resamples} resamples)", n_resamples=n_resamples)


def paired_permutation_test(a: object, b: object, *, n_resamples: int = 10_000, seed: int = 0) -> TestResult:
    """Two-sided paired randomisation test of mean(b) - mean(a) = 0 (a = control, b = variant).

    Under the null the arm labels within each unit are exchangeable, i.e. each difference's sign can be
    flipped. scipy's ``permutation_test(permutation_type="samples")`` does exactly this; we force
    the exact enumeration of all 2^n flips for n <= EXACT_MAX_UNITS (scipy alone goes exact only when
    2^n <= n_resamples). Monte Carlo p-values use scipy's (count + 1) / (n_resamples + 1).
    """
    from scipy import stats

    _check_resampling(n_resamples)
    x, y = _paired(a, b)
    n = x.size
    exact = n <= EXACT_MAX_UNITS or n <= math.log2(n_resamples)

    def mean_difference(control: np.ndarray, variant: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(variant - control, axis=axis)

    result = stats.permutation_test(
        (x, y), mean_difference, permutation_type="samples", vectorized=True,
        n_resamples=np.inf if exact else n_resamples, batch=max(1, _CHUNK_ELEMENTS // n),
        alternative="two-sided", rng=np.random.default_rng(seed),
    )
    if exact:
        name, used = f"paired randomisation test (sign-flip, exact over all 2^{n} = {2**n} flips)", 2**n
    else:
        name, used = f"paired randomisation test (sign-flip, {n_resamples} resamples)", n_resamples
    return TestResult(statistic=float(result.statistic), p_value=float(min(1.0, result.pvalue)), test=name,
                      n_resamples=used, exact=exact)


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row of x with the same row of y (nan where a row is constant)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (xc * yc).sum(axis=1) / denominator, np.nan)


def correlation_bootstrap(pred_control: object, pred_variant: object, gold: object, *,
                          method: Literal["spearman", "pearson"] = "spearman", n_resamples: int = 10_000,
                          confidence: float = 0.95, seed: int = 0) -> CorrelationBootstrap:
    """Bootstrap of corr(variant, gold) - corr(control, gold) over pairs (STS-style metrics).

    A correlation is not a mean of per-pair scores, so pairs are resampled and *both* correlations are
    recomputed on the same resample (Spearman re-ranks each resample, ties averaged, as spearmanr).
    The p-value is two-sided, read off the bootstrap distribution (see ``_bootstrap_p_value``).
    Resamples where a correlation is undefined (a constant resample, only plausible for tiny n) are
    excluded and counted in ``n_degenerate_resamples`` and in the test name.
    """
    from scipy import stats

    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    _check_resampling(n_resamples, confidence)
    control, variant = _paired(pred_control, pred_variant)
    control, truth = _paired(control, gold, names=("control predictions", "gold"))
    if control.size < 3:
        raise ValueError(f"a correlation bootstrap needs at least 3 pairs, got {control.size}")
    for name, values in (("control predictions", control), ("variant predictions", variant), ("gold", truth)):
        if np.ptp(values) == 0:
            raise ValueError(f"{name} are constant: the {method} correlation is undefined")

    correlate = stats.spearmanr if method == "spearman" else stats.pearsonr
    control_corr = float(correlate(control, truth)[0])
    variant_corr = float(correlate(variant, truth)[0])

    rng = np.random.default_rng(seed)
    chunks = []
    for idx in _index_chunks(rng, control.size, n_resamples):
        c, v, g = control[idx], variant[idx], truth[idx]
        if method == "spearman":
            c, v, g = (stats.rankdata(m, axis=1) for m in (c, v, g))
        chunks.append(_rowwise_pearson(v, g) - _rowwise_pearson(c, g))
    boot = np.concatenate(chunks)
    degenerate = int(np.count_nonzero(np.isnan(boot)))
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        raise ValueError("every bootstrap resample had an undefined correlation; too few distinct pairs")

    name = f"paired bootstrap of {method} correlation difference (percentile, {n_resamples} resamples"
    name += f"; {degenerate} degenerate resamples excluded)" if degenerate else ")"
    low, high = _percentile_bounds(boot, confidence)
    p_value = _bootstrap_p_value(boot)
    interval = Interval(estimate=variant_corr - control_corr, low=low, high=high, confidence=confidence,
                        test=name, n_resamples=n_resamples)
    return CorrelationBootstrap(delta=variant_corr - control_corr, interval=interval, p_value=p_value,
                                test=name + "; two-sided p from the bootstrap distribution",
                                control_corr=control_corr, variant_corr=variant_corr,
                                standard_error=float(boot.std(ddof=1)) if boot.size > 1 else math.nan,
                                n_degenerate_resamples=degenerate)


def _power_multiplier(alpha: float, power: float) -> float:
    from scipy import stats

    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got alpha={alpha}, power={power}")
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def min_detectable_effect(diffs_or_a: object, b: object | None = None, *, alpha: float = 0.05,
                          power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired test would detect with the given power.

    Normal approximation on the sample at hand: (z_{1-alpha/2} + z_{power}) * sd(diff) / sqrt(n), sd with
    ddof=1. Pass the per-unit differences, or ``(control, variant)``. nan for fewer than 2 units.
    """
    if b is None:
        diffs = _as_scores("diffs", diffs_or_a)
    else:
        x, y = _paired(diffs_or_a, b)
        diffs = y - x
    if diffs.size < 2:
        return math.nan
    return _power_multiplier(alpha, power) * float(diffs.std(ddof=1)) / math.sqrt(diffs.size)


def min_detectable_effect_from_se(standard_error: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The same formula with a given standard error of delta (e.g. a bootstrap SE for correlations)."""
    return _power_multiplier(alpha, power) * standard_error


def compare_units(control: object, variant: object, *, kind: UnitKind = "mean", gold: object | None = None,
                  seed: int = 0, n_resamples: int = 10_000, confidence: float = 0.95, alpha: float = 0.05,
                  power: float = 0.8) -> UnitComparison:
    """Compare one variant with the control on one task's paired units.

    kind="mean": ``control``/``variant`` are per-unit scores; paired bootstrap CI + sign-flip
    randomisation test; MDE from sd(diff). kind="spearman"/"pearson": they are per-pair predictions and
    ``gold`` is required; correlation bootstrap for CI and p; MDE from the bootstrap SE of delta.
    """
    if kind == "mean":
        if gold is not None:
            raise ValueError("gold is only used for kind='spearman' or 'pearson'; kind='mean' compares "
                             "per-unit scores directly")
        x, y = _paired(control, variant)
        interval = paired_bootstrap_ci(x, y, n_resamples=n_resamples, confidence=confidence, seed=seed)
        test = paired_permutation_test(x, y, n_resamples=n_resamples, seed=seed)
        return UnitComparison(
            kind=kind, n_units=x.size, control_value=float(x.mean()), variant_value=float(y.mean()),
            delta=interval.estimate, ci_low=interval.low, ci_high=interval.high, confidence=confidence,
            ci_test=interval.test, p_value=test.p_value, p_test=test.test,
            min_detectable_effect=min_detectable_effect(y - x, alpha=alpha, power=power),
            mde_method=f"normal approximation, sd(diff)/sqrt(n), alpha={alpha}, power={power}",
        )
    if kind in ("spearman", "pearson"):
        if gold is None:
            raise ValueError(f"kind={kind!r} compares correlations with gold scores: pass gold=")
        result = correlation_bootstrap(control, variant, gold, method=kind, n_resamples=n_resamples,
                                       confidence=confidence, seed=seed)
        return UnitComparison(
            kind=kind, n_units=int(np.asarray(gold).size), control_value=result.control_corr,
            variant_value=result.variant_corr, delta=result.delta, ci_low=result.interval.low,
            ci_high=result.interval.high, confidence=confidence, ci_test=result.interval.test,
            p_value=result.p_value, p_test=result.test,
            min_detectable_effect=min_detectable_effect_from_se(result.standard_error, alpha=alpha, power=power),
            mde_method=f"normal approximation, bootstrap SE of delta, alpha={alpha}, power={power}",
        )
    raise ValueError(f"kind must be 'mean', 'spearman' or 'pearson', got {kind!r}")


# --------------------------------------------------------------------------------------------------
# Several training seeds
# --------------------------------------------------------------------------------------------------


def _seed_matrix(arm: str, runs: Sequence[object]) -> np.ndarray:
    if len(runs) == 0:
        raise ValueError(f"{arm}: no seeds given")
    arrays = [_as_scores(f"{arm} seed #{i}", run) for i, run in enumerate(runs)]
    sizes = {a.size for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"{arm}: seeds have different numbers of units {[a.size for a in arrays]}; "
                         "every seed must be scored on the same units in the same order")
    return np.vstack(arrays)


def _seed_weights(rng: np.random.Generator, n_seeds: int, rows: int) -> np.ndarray:
    """Bootstrap weights over seeds: for each resample, how often each seed was drawn, over n_seeds."""
    drawn = rng.integers(0, n_seeds, size=(rows, n_seeds))
    return (drawn[:, :, None] == np.arange(n_seeds)).sum(axis=1) / n_seeds


def compare_seeds(control: Sequence[object], variant: Sequence[object], *, seed: int = 0,
                  n_resamples: int = 10_000, confidence: float = 0.95) -> SeedComparison:
    """Compare arms trained with several seeds each, counting seed-to-seed variance as noise.

    Two-level bootstrap: each resample draws seeds with replacement within each arm, then units with
    replacement (the same unit indices for both arms, which keeps the pairing), and computes
    delta = mean over drawn variant seeds and units - the same for control. CI = percentile interval,
    p = two-sided from the bootstrap distribution. With few seeds the seed level is itself uncertain
    (bootstrapping k seeds shrinks their variance by (k-1)/k), so treat 2-3 seeds as a floor, not a fit.

    With one seed per arm there is no seed variance to estimate: falls back to ``compare_units`` and
    says so in ``test``. ``query_noise_only`` is always the unit-level test on seed-averaged scores, so a
    report can show how much of an apparent effect survives seed variance.
    """
    _check_resampling(n_resamples, confidence)
    c, v = _seed_matrix("control", control), _seed_matrix("variant", variant)
    if c.shape[1] != v.shape[1]:
        raise ValueError(f"control seeds have {c.shape[1]} units but variant seeds have {v.shape[1]}; "
                         "both arms must be scored on the same units")
    n_units = c.shape[1]
    control_means, variant_means = c.mean(axis=1), v.mean(axis=1)
    spread = {arm: float(m.std(ddof=1)) if m.size > 1 else math.nan
              for arm, m in (("control", control_means), ("variant", variant_means))}
    query_noise = compare_units(c.mean(axis=0), v.mean(axis=0), kind="mean", seed=seed,
                                n_resamples=n_resamples, confidence=confidence)
    common = dict(n_units=n_units, n_seeds_control=c.shape[0], n_seeds_variant=v.shape[0],
                  control_seed_means=tuple(control_means.tolist()),
                  variant_seed_means=tuple(variant_means.tolist()),
                  control_seed_std=spread["control"], variant_seed_std=spread["variant"],
                  confidence=confidence, query_noise_only=query_noise)

    if c.shape[0] == 1 and v.shape[0] == 1:
        return SeedComparison(
            delta=query_noise.delta, ci_low=query_noise.ci_low, ci_high=query_noise.ci_high,
            p_value=query_noise.p_value,
            test=f"{query_noise.ci_test} + {query_noise.p_test} — one seed per arm: query noise only, "
                 "seed variance not estimated",
            note="one training seed per arm: differences between seeds are not accounted for", **common)

    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n_units)
    chunks = []
    for start in range(0, n_resamples, rows):
        size = min(rows, n_resamples - start)
        per_unit_delta = _seed_weights(rng, v.shape[0], size) @ v - _seed_weights(rng, c.shape[0], size) @ c
        units = rng.integers(0, n_units, size=(size, n_units))
        chunks.append(np.take_along_axis(per_unit_delta, units, axis=1).mean(axis=1))
    boot = np.concatenate(chunks)
    low, high = _percentile_bounds(boot, confidence)
    note = ""
    if min(c.shape[0], v.shape[0]) == 1:
        note = "one arm has a single seed: only the other arm's seed variance is counted"
    return SeedComparison(
        delta=float(variant_means.mean() - control_means.mean()), ci_low=low, ci_high=high,
        p_value=_bootstrap_p_value(boot),
        test=f"two-level bootstrap (seeds within each arm, then shared units; percentile, {n_resamples} "
             "resamples; two-sided p from the bootstrap distribution)",
        note=note, **common)


# --------------------------------------------------------------------------------------------------
# Across tasks, multiple comparisons, marks
# --------------------------------------------------------------------------------------------------


def across_tasks(deltas: Mapping[str, float], *, seed: int = 0, n_resamples: int = 10_000,
                 confidence: float = 0.95, tie_eps: float = 1e-9) -> AcrossTasks:
    """Summarise one variant's per-task deltas: mean, bootstrap CI over tasks, Wilcoxon, win/tie/loss.

    Each task counts once (the unit here is the task). |delta| < tie_eps is a tie, and ties are set to
    exactly 0 before the Wilcoxon signed-rank test, whose scipy default (zero_method="wilcox") then
    drops them — so "tie" means the same thing in the counts and in the test.
    """
    _check_resampling(n_resamples, confidence)
    from scipy import stats

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
    notes: list[str] = []

    boot = _bootstrap_means(values, n_resamples, seed)
    low, high = _percentile_bounds(boot, confidence)
    if values.size < 10:
        notes.append(f"only {values.size} tasks: the bootstrap CI over tasks is rough")

    p_test = "Wilcoxon signed-rank (two-sided, zero_method='wilcox')"
    if values.size < 2:
        statistic, p_value = math.nan, math.nan
        notes.append("fewer than 2 tasks: no across-task test")
    elif wins + losses == 0:
        statistic, p_value = 0.0, 1.0
        notes.append("every task is a tie: p set to 1")
    else:
        result = stats.wilcoxon(values, zero_method="wilcox", alternative="two-sided")
        statistic, p_value = float(result.statistic), float(result.pvalue)
        floor = 2 / 2 ** (wins + losses)
        if floor > 0.05:
            notes.append(f"with {wins + losses} non-tied tasks the smallest attainable Wilcoxon p is "
                         f"{floor:.3g}: it cannot reach 0.05")
    return AcrossTasks(n_tasks=values.size, mean_delta=float(values.mean()), ci_low=low, ci_high=high,
                       confidence=confidence,
                       ci_test=f"bootstrap over tasks (percentile, {n_resamples} resamples)",
                       wilcoxon_statistic=statistic, p_value=p_value, p_test=p_test, wins=wins, ties=ties,
                       losses=losses, tie_eps=tie_eps, notes=tuple(notes))


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


# --------------------------------------------------------------------------------------------------
# Leaderboard aggregates
# --------------------------------------------------------------------------------------------------


def mean_task_type_and_borda(scores: pd.DataFrame, task_types: Mapping[str, str]) -> pd.DataFrame:
    """MTEB-leaderboard aggregates: one row per model (index), sorted by Borda rank.

    Columns: one per task type (mean of that type's tasks), "Mean (Task)", "Mean (TaskType)" (mean of
    the per-type means), "Borda count", "Rank (Borda)". Matches mteb 2.x
    (``mteb/benchmarks/_create_table.py``: ``_get_borda_rank`` and ``_skipna_false_mean``):
    - per task, models are ranked by score, highest = 1, ties get the average rank; a model earns
      (#models - rank) points per task; a missing score earns 0 points;
    - the overall rank orders Borda counts descending, ties share the best rank ("min");
    - means are NaN when any of their inputs is missing (no silent averaging over fewer tasks).
    """
    import pandas as pd

    if scores.empty:
        raise ValueError("mean_task_type_and_borda: empty score table (rows = models, columns = tasks)")
    untyped = [t for t in scores.columns if t not in task_types]
    if untyped:
        raise ValueError(f"no task type given for task(s) {untyped}; pass task_types[task] = e.g. 'Retrieval'")
    table = scores.astype(float)
    types = sorted({task_types[t] for t in table.columns})
    out = pd.DataFrame(index=table.index)
    for task_type in types:
        columns = [t for t in table.columns if task_types[t] == task_type]
        out[task_type] = table[columns].mean(axis=1, skipna=False)
    out["Mean (Task)"] = table.mean(axis=1, skipna=False)
    out["Mean (TaskType)"] = out[types].mean(axis=1, skipna=False)
    ranks = table.rank(axis=0, method="average", ascending=False, na_option="keep")
    out["Borda count"] = (len(table) - ranks).sum(axis=1, skipna=True)
    out["Rank (Borda)"] = out["Borda count"].rank(method="min", ascending=False).astype(int)
    return out.sort_values("Rank (Borda)", kind="stable")
