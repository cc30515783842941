"""Paired comparisons of each variant with the control, from results/ files alone.

Units (queries, sentences, pairs) are aligned by id across arms, so every test is paired. Every
task is either tested or listed with the reason (``Untested``). Several training seeds per arm
switch the per-task test to the two-level t-test (``seeds``); one seed falls back to unit noise
only, and the test name says which was used. The resample count follows the family size
(``families.resamples_for_family``) so that the strongest resampling comparison can reach ***
after Holm; every comparison carries the smallest p it could have reached, raw and after Holm.
A recipe's scores and units are read once (``RecipeData``) and shared by the tests, the plots,
the power plans and the factorial analysis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.paths import CONTROL_NAME
from harness.report import families
from harness.report.paired import compare_units
from harness.report.results import Skipped, load_scores, load_units, load_variant_configs
from harness.report.seeds import compare_seeds_family
from harness.report.unit_choice import UnitMetric, choose_unit_metric

KEYS = ["subset", "split", "unit"]


@dataclass
class TaskComparison:
    variant: str
    task: str
    unit_metric: str
    n_units: int
    n_seeds: tuple[int, int]
    control: float
    value: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    seed_spread: tuple[float, float]
    mde: float
    p_min: float  # the smallest p the test could return on these units and resamples
    p_test: str  # the test that produced p_value (``test`` also names the CI's method)
    p_holm: float = float("nan")
    p_min_holm: float = float("nan")  # ... after Holm over the task's family


@dataclass(frozen=True)
class Untested:
    """A task the per-task tests could not cover, and why (printed, never silently dropped)."""

    task: str
    task_type: str
    reason: str


@dataclass
class TaskArms:
    """One task's per-unit scores, aligned across every arm: arm -> (seeds x units) matrix."""

    metric: str
    kind: str  # "mean", "spearman", "pearson" or "average_precision"
    scores: dict[str, np.ndarray]
    gold: np.ndarray | None  # gold side (STS scores, pair labels) for set statistics, aligned like the scores
    label: str = ""


@dataclass
class RecipeData:
    """Everything a report reads from one results/<recipe>/ folder, read once."""

    recipe_dir: Path
    scores: pd.DataFrame
    units: dict[tuple[str, int], pd.DataFrame]
    configs: dict[str, dict[str, Any]]
    skipped: list[Skipped] = field(default_factory=list)

    @cached_property
    def meta(self) -> pd.DataFrame:
        return self.scores.drop_duplicates("task").set_index("task")

    @cached_property
    def arms(self) -> dict[str, list[pd.DataFrame]]:
        return recipe_arms(self.units, self.scores)

    @cached_property
    def tasks(self) -> dict[str, TaskArms | Untested]:
        """Every task's aligned units over every arm with units, or why it has none."""
        out: dict[str, TaskArms | Untested] = {}
        for task in sorted(self.scores["task"].unique()):
            out[task] = task_arms(task, self.meta.at[task, "type"], self.meta.at[task, "main_metric"], self.arms)
        return out


def load_recipe(recipe_dir: Path) -> RecipeData:
    skipped: list[Skipped] = []
    scores = load_scores(recipe_dir, skipped=skipped, recipe_level=True)
    units = load_units(recipe_dir, skipped=skipped)
    configs = load_variant_configs(recipe_dir, skipped=skipped)
    return RecipeData(recipe_dir, scores, units, configs, skipped)


def recipe_arms(units: dict[tuple[str, int], pd.DataFrame], scores: pd.DataFrame) -> dict[str, list[pd.DataFrame]]:
    """Arm -> its seeds' unit frames (seed order), for the arms that have both scores and units."""
    if scores.empty:
        return {}
    seeds = scores.groupby("variant")["seed"].unique().to_dict()
    arms = {v: [units[(v, s)] for s in sorted(seeds[v]) if (v, s) in units] for v in sorted(seeds)}
    return {v: frames for v, frames in arms.items() if frames}


def _aligned(frames: list[pd.DataFrame], reference: pd.Index) -> list[np.ndarray]:
    return [f.set_index(KEYS)["value"].reindex(reference).to_numpy(dtype=float) for f in frames]


def task_arms(task: str, task_type: str, main_metric: str,
              arms: dict[str, list[pd.DataFrame]]) -> TaskArms | Untested:
    """Every arm's per-unit scores on one task, on the units all arms share — or why there are none.

    The unit metric comes from *this task's* units in every arm (``unit_choice``)."""
    if not arms:
        return Untested(task, task_type, "no units.parquet for any arm")
    own = {arm: [f[f.task == task] for f in frames] for arm, frames in arms.items()}
    available = set.intersection(*(set(f.metric) for frames in own.values() for f in frames))
    pick = choose_unit_metric(task_type, main_metric, available)
    if isinstance(pick, str):
        return Untested(task, task_type, pick)
    selected = {arm: [f[f.metric == pick.metric] for f in frames] for arm, frames in own.items()}
    frames = [f for per_arm in selected.values() for f in per_arm]
    common = frames[0].set_index(KEYS).index
    for frame in frames[1:]:
        common = common.intersection(frame.set_index(KEYS).index)
    if common.empty:
        return Untested(task, task_type, f"the arms share no unit of `{pick.metric}`")
    common = common.sort_values()
    matrices = {arm: np.vstack(_aligned(per_arm, common)) for arm, per_arm in selected.items()}
    gold = None
    if pick.gold:
        first = next(iter(own.values()))[0]
        gold = _aligned([first[first.metric == pick.gold]], common)[0]
    return TaskArms(pick.metric, pick.kind, matrices, gold, UnitMetric(pick.metric, pick.kind, pick.gold).label)


def compare_task(task: str, data: TaskArms, control: str, *, seed: int = 0,
                 n_resamples: int = 10_000) -> list[TaskComparison]:
    """Every variant vs the control on one task."""
    ctrl = data.scores[control]
    variants = {v: m for v, m in data.scores.items() if v != control}
    out = []
    if data.kind != "mean":  # set statistics (correlation, AP): bootstrap over units of seed-averaged scores
        for name, var in variants.items():
            res = compare_units(ctrl.mean(axis=0), var.mean(axis=0), kind=data.kind,  # type: ignore[arg-type]
                                gold=data.gold, seed=seed, n_resamples=n_resamples)
            seeds_note = "" if len(ctrl) == len(var) == 1 else " (seed-averaged scores: seed variance not counted)"
            out.append(TaskComparison(
                name, task, data.label, res.n_units, (len(ctrl), len(var)), res.control_value,
                res.variant_value, res.delta, res.ci_low, res.ci_high, res.p_value,
                f"{res.ci_test}; {res.p_test}{seeds_note}", (math.nan, math.nan), res.min_detectable_effect,
                res.p_min, res.p_test))
        return out
    family = compare_seeds_family(list(ctrl), {v: list(m) for v, m in variants.items()}, seed=seed,
                                  n_resamples=n_resamples)
    for name, sc in family.items():
        var = variants[name]
        one_seed = sc.n_seeds_control == sc.n_seeds_variant == 1
        test = f"{sc.query_noise_only.ci_test}; {sc.query_noise_only.p_test}" if one_seed else sc.test
        p_test = sc.query_noise_only.p_test if one_seed else "two-level t-test"
        out.append(TaskComparison(
            name, task, data.label, sc.n_units, (len(ctrl), len(var)), float(ctrl.mean()), float(var.mean()),
            sc.delta, sc.ci_low, sc.ci_high, sc.p_value, test, (sc.control_seed_std, sc.variant_seed_std),
            sc.query_noise_only.min_detectable_effect, sc.p_min, p_test))
    return out


def compare_recipe(data: RecipeData, *, control: str = CONTROL_NAME,
                   n_resamples: int | None = None) -> tuple[list[TaskComparison], dict[str, Any]]:
    """Every variant vs the control on every task (Holm-corrected per task across variants),
    plus the across-task summary per variant (Holm-corrected across variants).

    ``n_resamples`` defaults to ``families.resamples_for_family(number of variants)``; the summary
    records it with the family size, and lists every task that was not tested with the reason.
    """
    scores = data.scores
    variants = sorted(v for v in scores["variant"].unique() if v != control)
    resamples = n_resamples or families.resamples_for_family(max(1, len(variants)))
    comparisons: list[TaskComparison] = []
    untested: list[Untested] = []
    arms = data.arms
    without_units = [a for a in [control, *variants] if a not in arms]
    for task, entry in data.tasks.items():
        if not variants or control not in scores["variant"].values:
            break
        if isinstance(entry, Untested):
            untested.append(entry)
            continue
        family_arms = {a: m for a, m in entry.scores.items() if a == control or a in variants}
        if control not in family_arms or len(family_arms) < 2:
            who = "the control" if control not in family_arms else "any variant"
            untested.append(Untested(task, str(data.meta.at[task, "type"]), f"no units.parquet for {who}"))
            continue
        per_task = compare_task(task, TaskArms(entry.metric, entry.kind, family_arms, entry.gold, entry.label),
                                control, n_resamples=resamples)
        adjusted = families.holm({c.variant: c.p_value for c in per_task})
        for c in per_task:
            c.p_holm = adjusted[c.variant]
            c.p_min_holm = families.holm_p_min(c.p_min, len(per_task))
        comparisons.extend(per_task)

    main = scores.groupby(["variant", "task"])["main_score"].mean().unstack() if not scores.empty else pd.DataFrame()
    summary: dict[str, Any] = {}
    for variant in variants:
        if control not in main.index:
            break
        deltas = (main.loc[variant] - main.loc[control]).dropna().to_dict()
        summary[variant] = families.across_tasks(deltas, n_resamples=resamples)
    finite = {v: s.p_value for v, s in summary.items() if not np.isnan(s.p_value)}
    summary_holm = families.holm(finite) if finite else {}
    return comparisons, {"across": summary, "holm": summary_holm, "n_resamples": resamples,
                         "family_size": len(variants), "untested": untested,
                         "without_units": without_units}
