"""Power planning: how small an effect today's seeds and units can detect, and what detecting D needs.

Variance model, per task (arm a = control or a variant, training seed s, evaluation unit u):

    y[a, s, u] = mu_a + theta_u + delta[a, u] + g[a, s] + r[a, s, u]

- ``theta_u``: the unit's difficulty, shared by every arm and seed. Paired comparisons cancel it.
- ``delta[a, u]``: how arm a fares on unit u beyond its average (arm x unit interaction). The paired
  difference ``delta[v, u] - delta[c, u]`` varies over units with variance ``unit_var``. It is a property
  of the trained recipe, not of a seed: only more units average it away.
- ``g[a, s]``: seed s's effect on arm a's whole task score, independent per arm and seed, variance
  ``seed_var``. Only more seeds average it away.
- ``r[a, s, u]``: the seed x unit residual (a seed gets a unit right by luck), variance ``resid_var``;
  averages away with seeds x units.

So unit noise is paired (shared across arms) and seed noise is per arm. The estimated difference
(mean over the variant's k_v seeds and n units minus the same for the control's k_c seeds) has

    Var(delta_hat) = unit_var / n + sum over both arms of (seed_var + resid_var / n) / k_a.

The report's per-task test with several seeds, the two-level t-test of ``seeds.two_level_test``, uses
exactly this variance (its SE² estimates each term) with Satterthwaite's df (``seeds.two_level_df``, the
seed term guarded at its upper 75 % bound). Plans here are for that test: it rejects when
|delta_hat| > t_{df, 1-alpha/2} SE, so

    MDE = t_{df, 1-alpha/2} SE + z_power SE,   df from the design's expected variance terms.

With one seed per arm the report falls back to the unit-level test on d_u, SE = sd(d)/sqrt(n) and the
normal quantile.

Estimation from results (method of moments on each arm's seeds x units table, a two-way layout
without replication): the residual mean square estimates ``resid_var``; n x the variance of the seed
means estimates ``n seed_var + resid_var``. Both are pooled over every arm with >= 2 seeds (sums of
squares over degrees of freedom), since the model gives all arms one seed variance. ``unit_var`` comes
from each variant's seed-averaged paired differences d_u, whose variance is
``unit_var + resid_var (1/k_c + 1/k_v)``; the task's value is the median over the recipe's variants (a
typical comparison; one arm that changes a task wholesale would otherwise dominate). Negative moment
estimates are set to 0. With one seed per arm ``seed_var`` and ``resid_var`` are not identifiable:
``var(d)`` stands in for ``unit_var``, the MDE is unit noise only, and seeds cannot be planned.

Seeds needed (the same number per arm, at today's units) and units needed (at today's seeds) are the
smallest values whose MDE is <= D (both SEs fall as k or n grows, so a bisection finds them). Either
can be impossible: with infinitely many seeds the MDE still has the unit term, with infinitely many
units the seed term. Planned seeds are at least 2, the fewest that estimate seed variance. The normal
approximation and plug-in variances make plans below ~4 seeds per arm rough. alpha is per comparison:
for the worst case of a Holm family of m comparisons pass alpha / m.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from harness.text_table import markdown_table

from harness.errors import HarnessError
from harness.paths import CONTROL_NAME
from harness.report.paired import min_detectable_effect_from_se
from harness.report.seeds import two_level_df
from harness.report.significance import RecipeData, TaskArms, load_recipe

#: The effect the report plans for, in score points (x100): one point of nDCG@10, accuracy, ...
REPORT_DELTA_POINTS = 1.0
#: Search bounds: beyond these a plan is reported as impossible ("–").
MAX_SEEDS = 100_000
MAX_UNITS = 10**9


@dataclass(frozen=True)
class Components:
    """Variance components of one task (score units, not x100) and the design they were seen at."""

    n_units: int
    seeds_control: int
    seeds_variant: int  # the fewest seeds of any variant
    unit_var: float
    seed_var: float  # nan with one seed per arm
    resid_var: float  # nan with one seed per arm
    n_variants: int

    @property
    def seeds_known(self) -> bool:
        return math.isfinite(self.seed_var)


@dataclass(frozen=True)
class TaskPlan:
    task: str
    metric: str
    components: Components
    standard_error: float  # SE of delta_hat at today's design (the two-level t-test estimates this one)
    df: float  # the test's degrees of freedom at today's design (inf: normal quantile)
    mde: float  # at today's design
    seeds_needed: int | None  # per arm, at today's units; None = impossible or not identifiable
    units_needed: int | None  # at today's seeds; None = impossible
    note: str = ""


def check_targets(delta: float, alpha: float, power: float) -> None:
    """Reject planning targets outside their range, naming the option (a user error, not a bug)."""
    if not (math.isfinite(delta) and delta > 0):
        raise HarnessError(f"power: --delta must be a positive number of score points, got {delta}")
    for name, value in (("--alpha", alpha), ("--power", power)):
        if not 0 < value < 1:
            raise HarnessError(f"power: {name} must be between 0 and 1 (exclusive), got {value}")


def _two_way(matrix: np.ndarray) -> tuple[float, int, float, int]:
    """Seed and residual sums of squares (with degrees of freedom) of one arm's seeds x units table."""
    k, n = matrix.shape
    seed_means, unit_means, grand = matrix.mean(axis=1), matrix.mean(axis=0), matrix.mean()
    residual = matrix - seed_means[:, None] - unit_means[None, :] + grand
    return float(n * ((seed_means - grand) ** 2).sum()), k - 1, float((residual**2).sum()), (k - 1) * (n - 1)


def estimate_components(arms: Mapping[str, np.ndarray], control: str = CONTROL_NAME) -> Components:
    """Variance components from every arm's (seeds x units) scores on one task's shared units."""
    if control not in arms or len(arms) < 2:
        raise ValueError(f"estimate_components needs the control {control!r} and at least one variant")
    matrices = {a: np.atleast_2d(np.asarray(m, dtype=float)) for a, m in arms.items()}
    n = matrices[control].shape[1]
    if any(m.shape[1] != n for m in matrices.values()) or n < 2:
        raise ValueError("every arm must be scored on the same >= 2 units")
    parts = [_two_way(m) for m in matrices.values() if m.shape[0] >= 2]
    if parts:
        ss_seed, df_seed, ss_resid, df_resid = (sum(p[i] for p in parts) for i in range(4))
        resid_var = ss_resid / df_resid
        seed_var = max(0.0, (ss_seed / df_seed - resid_var) / n)
    else:
        seed_var = resid_var = math.nan
    k_c = matrices[control].shape[0]
    unit_vars = []
    for arm, m in matrices.items():
        if arm == control:
            continue
        d = m.mean(axis=0) - matrices[control].mean(axis=0)
        shrink = resid_var * (1 / k_c + 1 / m.shape[0]) if parts else 0.0
        unit_vars.append(max(0.0, float(d.var(ddof=1)) - shrink))
    return Components(n_units=n, seeds_control=k_c,
                      seeds_variant=min(m.shape[0] for a, m in matrices.items() if a != control),
                      unit_var=float(np.median(unit_vars)), seed_var=seed_var, resid_var=resid_var,
                      n_variants=len(unit_vars))


def standard_error(c: Components, n_units: int, seeds_control: int, seeds_variant: int) -> tuple[float, float]:
    """(SE of delta_hat, the two-level t-test's df) at a design; see the module docstring.

    One seed per arm (or seeds unknown): unit noise only and df = inf (the unit-level test, normal quantile)."""
    unit_term = c.unit_var / n_units
    if not c.seeds_known or seeds_control + seeds_variant < 3:
        return math.sqrt(unit_term), math.inf
    seed_term = (1 / seeds_control + 1 / seeds_variant) * (c.seed_var + c.resid_var / n_units)
    df = two_level_df(seed_term, seeds_control + seeds_variant - 2, unit_term, n_units - 1)
    return math.sqrt(unit_term + seed_term), df


def detectable_effect(c: Components, n_units: int, seeds_control: int, seeds_variant: int, *, alpha: float = 0.05,
                      power: float = 0.8) -> float:
    """The smallest true difference the report's test detects with probability ``power`` at this design."""
    from scipy import stats

    se, df = standard_error(c, n_units, seeds_control, seeds_variant)
    if not math.isfinite(df):
        return min_detectable_effect_from_se(se, alpha=alpha, power=power)
    return float(stats.t.ppf(1 - alpha / 2, df) * se + stats.norm.ppf(power) * se)


def _smallest(ok: Callable[[int], bool], low: int, high: int) -> int | None:
    """The smallest integer in [low, high] where the monotone predicate ``ok`` holds; None if none."""
    if not ok(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if ok(middle):
            high = middle
        else:
            low = middle + 1
    return low


def seeds_needed(c: Components, delta: float, *, alpha: float = 0.05, power: float = 0.8,
                 n_units: int | None = None) -> int | None:
    """Seeds per arm (same for both) to detect ``delta`` at ``n_units`` (default: today's); None if none do."""
    if not c.seeds_known:
        return None
    n = n_units or c.n_units
    return _smallest(lambda k: detectable_effect(c, n, k, k, alpha=alpha, power=power) <= delta, 2, MAX_SEEDS)


def units_needed(c: Components, delta: float, *, alpha: float = 0.05, power: float = 0.8,
                 seeds: tuple[int, int] | None = None) -> int | None:
    """Units to detect ``delta`` with (control, variant) seeds (default: today's); None if no number does."""
    k_c, k_v = seeds or (c.seeds_control, c.seeds_variant)
    return _smallest(lambda n: detectable_effect(c, n, k_c, k_v, alpha=alpha, power=power) <= delta, 2, MAX_UNITS)


def plan_task(task: str, metric: str, c: Components, delta: float, *, alpha: float = 0.05,
              power: float = 0.8) -> TaskPlan:
    se, df = standard_error(c, c.n_units, c.seeds_control, c.seeds_variant)
    seeds = seeds_needed(c, delta, alpha=alpha, power=power)
    units = units_needed(c, delta, alpha=alpha, power=power)
    notes = []
    if not c.seeds_known:
        notes.append("one seed per arm: seed variance unknown, unit noise only")
    elif seeds is None:
        notes.append("unit-limited: no number of seeds reaches Δ on these units")
    if units is None:
        notes.append("seed-limited: no number of units reaches Δ at these seeds")
    mde = detectable_effect(c, c.n_units, c.seeds_control, c.seeds_variant, alpha=alpha, power=power)
    return TaskPlan(task, metric, c, se, df, mde, seeds, units, "; ".join(notes))


def plan_recipe(recipe_dir: Path, delta: float, *, alpha: float = 0.05, power: float = 0.8,
                control: str = CONTROL_NAME, required: bool = True, data: RecipeData | None = None) -> list[TaskPlan]:
    """One plan per task with per-unit mean scores (set statistics such as STS correlations are skipped).

    ``delta`` is in score units (0.01 = one point of a 0-1 metric). Without the control's and at least
    one variant's units there is nothing to plan from: a HarnessError if ``required``, else no plans.
    ``data``: the recipe already read (the report passes its own, so units are read once).
    """
    data = data or load_recipe(recipe_dir)
    arms = data.arms
    if control not in arms or len(arms) < 2:
        if not required:
            return []
        raise HarnessError(f"{recipe_dir}: power planning needs scores.json and units.parquet for the control "
                           f"{control!r} and at least one variant; found units for {sorted(arms) or 'no arm'}")
    plans = []
    for task, entry in data.tasks.items():
        if not isinstance(entry, TaskArms) or entry.kind != "mean" or control not in entry.scores:
            continue
        if entry.scores[control].shape[1] < 2:  # one unit: no variance to plan from
            continue
        plans.append(plan_task(task, entry.metric, estimate_components(entry.scores, control), delta,
                               alpha=alpha, power=power))
    return plans


def _points(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{100 * value:.2f}"


def power_markdown(plans: list[TaskPlan], delta: float, *, alpha: float = 0.05, power: float = 0.8) -> str:
    """The per-task planning table (x100 score points) with a line saying what it assumes."""
    if not plans:
        return "No task with per-unit mean scores to plan for.\n"
    rows = [[p.task, p.metric, p.components.n_units, f"{p.components.seeds_control}/{p.components.seeds_variant}",
             _points(math.sqrt(p.components.unit_var)), _points(math.sqrt(p.components.seed_var)),
             _points(math.sqrt(p.components.resid_var)), _points(p.standard_error),
             "∞" if not math.isfinite(p.df) else f"{p.df:.1f}", _points(p.mde),
             "–" if p.seeds_needed is None else p.seeds_needed, "–" if p.units_needed is None else p.units_needed,
             p.note] for p in plans]
    headers = ["task", "unit metric", "units", "seeds c/v", "unit sd", "seed sd", "resid sd", "SE of Δ", "df",
               "MDE", f"seeds/arm for Δ={100 * delta:g}", f"units for Δ={100 * delta:g}", "notes"]
    lines = [f"For the report's per-task test at α={alpha:g} (two-sided, per comparison, before Holm) and power "
             f"{power:g}. Var(Δ) = unit sd²/n + Σ_arms (seed sd² + resid sd²/n)/k: unit noise is paired across "
             "arms, seed noise is per arm (unit sd: median over the variants; seed and resid sd: pooled over all "
             "arms) — the variance the two-level t-test estimates, so MDE = t_df·SE + z_power·SE with the test's "
             "Satterthwaite df (∞: one seed per arm, unit-level test, normal quantile). "
             "MDE at today's units and seeds; seeds/arm at today's units; "
             "units at today's seeds. Score points x100; – = no number suffices.",
             "", markdown_table(rows, headers)]
    return "\n".join(lines) + "\n"
