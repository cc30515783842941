"""Paired comparisons of each variant with the control, from results/ files alone.

Units (queries, sentences, pairs) are aligned by id across arms, so every test is paired.
Several training seeds per arm switch the per-task test to the seed-aware two-level
bootstrap; one seed falls back to unit noise only, and the test name says which was used.
The resample count follows the family size (``stats.resamples_for_family``) so that the
strongest comparison can reach *** after Holm; every comparison carries the smallest p it
could have reached, raw and after Holm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.recipe import CONTROL_NAME
from harness.report import stats

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


@dataclass
class TaskArms:
    """One task's per-unit scores, aligned across every arm: arm -> (seeds x units) matrix."""

    metric: str
    kind: str  # "mean" or "spearman"
    scores: dict[str, np.ndarray]
    gold: np.ndarray | None  # STS gold scores (kind "spearman"), aligned like the scores


def unit_metric(task_type: str, main_metric: str, available: set[str]) -> tuple[str, str] | None:
    """Which per-unit metric stands for a task's main score, and how units aggregate."""
    if task_type == "STS" and {"similarity", "gold"} <= available:
        return "similarity", "spearman"
    if main_metric in available:
        return main_metric, "mean"
    if task_type == "BitextMining" and "hit" in available:
        return "hit", "mean"  # per-sentence accuracy; the main score (F1) has no per-unit form
    for fallback in ("ndcg_at_10", "recall_at_10", "correct", "v_measure"):
        if fallback in available:
            return fallback, "mean"
    return None


def load_recipe_units(recipe_dir: Path) -> dict[tuple[str, int], pd.DataFrame]:
    """Per-unit scores by (variant, seed); unreadable runs are skipped (harness/report/results.py)."""
    from harness.report.results import load_units

    return load_units(recipe_dir)


def recipe_arms(units: dict[tuple[str, int], pd.DataFrame], scores: pd.DataFrame) -> dict[str, list[pd.DataFrame]]:
    """Arm -> its seeds' unit frames (seed order), for the arms that have both scores and units."""
    seeds = scores.groupby("variant")["seed"].unique().to_dict()
    arms = {v: [units[(v, s)] for s in sorted(seeds[v]) if (v, s) in units] for v in sorted(seeds)}
    return {v: frames for v, frames in arms.items() if frames}


def _aligned(frames: list[pd.DataFrame], reference: pd.Index) -> list[np.ndarray]:
    return [f.set_index(KEYS)["value"].reindex(reference).to_numpy(dtype=float) for f in frames]


def task_arms(task: str, task_type: str, main_metric: str, arms: dict[str, list[pd.DataFrame]]) -> TaskArms | None:
    """Every arm's per-unit scores on one task, on the units all arms share; None without per-unit scores."""
    available = set.intersection(*(set(frames[0]["metric"]) for frames in arms.values()))
    pick = unit_metric(task_type, main_metric, available)
    if pick is None:
        return None
    metric, kind = pick
    selected = {arm: [f[(f.task == task) & (f.metric == metric)] for f in frames] for arm, frames in arms.items()}
    frames = [f for per_arm in selected.values() for f in per_arm]
    common = frames[0].set_index(KEYS).index
    for frame in frames[1:]:
        common = common.intersection(frame.set_index(KEYS).index)
    if common.empty:
        return None
    common = common.sort_values()
    matrices = {arm: np.vstack(_aligned(per_arm, common)) for arm, per_arm in selected.items()}
    gold = None
    if kind == "spearman":
        first = next(iter(arms.values()))[0]
        gold = _aligned([first[(first.task == task) & (first.metric == "gold")]], common)[0]
    return TaskArms(metric, kind, matrices, gold)


def compare_task(task: str, data: TaskArms, control: str, *, seed: int = 0,
                 n_resamples: int = 10_000) -> list[TaskComparison]:
    """Every variant vs the control on one task (one shared resampling draw for the family)."""
    ctrl = data.scores[control]
    variants = {v: m for v, m in data.scores.items() if v != control}
    out = []
    if data.kind == "spearman":
        for name, var in variants.items():
            res = stats.compare_units(ctrl.mean(axis=0), var.mean(axis=0), kind="spearman", gold=data.gold,
                                      seed=seed, n_resamples=n_resamples)
            out.append(TaskComparison(
                name, task, f"{data.metric} (spearman)", res.n_units, (len(ctrl), len(var)), res.control_value,
                res.variant_value, res.delta, res.ci_low, res.ci_high, res.p_value, f"{res.ci_test}; {res.p_test}",
                (float("nan"), float("nan")), res.min_detectable_effect, res.p_min, res.p_test))
        return out
    family = stats.compare_seeds_family(list(ctrl), {v: list(m) for v, m in variants.items()}, seed=seed,
                                        n_resamples=n_resamples)
    for name, sc in family.items():
        var = variants[name]
        one_seed = sc.n_seeds_control == sc.n_seeds_variant == 1
        test = f"{sc.query_noise_only.ci_test}; {sc.query_noise_only.p_test}" if one_seed else sc.test
        p_test = sc.query_noise_only.p_test if one_seed else "two-level bootstrap"
        out.append(TaskComparison(
            name, task, data.metric, sc.n_units, (len(ctrl), len(var)), float(ctrl.mean()), float(var.mean()),
            sc.delta, sc.ci_low, sc.ci_high, sc.p_value, test, (sc.control_seed_std, sc.variant_seed_std),
            sc.query_noise_only.min_detectable_effect, sc.p_min, p_test))
    return out


def compare_recipe(recipe_dir: Path, scores: pd.DataFrame, *, control: str = CONTROL_NAME,
                   n_resamples: int | None = None) -> tuple[list[TaskComparison], dict[str, Any]]:
    """Every variant vs the control on every task (Holm-corrected per task across variants),
    plus the across-task summary per variant (Holm-corrected across variants).

    ``n_resamples`` defaults to ``stats.resamples_for_family(number of variants)``; the summary
    records it with the family size.
    """
    arms = recipe_arms(load_recipe_units(recipe_dir), scores)
    meta = scores.drop_duplicates("task").set_index("task")
    variants = sorted(v for v in scores["variant"].unique() if v != control)
    resamples = n_resamples or stats.resamples_for_family(max(1, len(variants)))
    comparisons: list[TaskComparison] = []
    if control in arms and any(v in arms for v in variants):
        family = {v: frames for v, frames in arms.items() if v == control or v in variants}
        for task in sorted(scores["task"].unique()):
            data = task_arms(task, meta.at[task, "type"], meta.at[task, "main_metric"], family)
            if data is None:
                continue
            per_task = compare_task(task, data, control, n_resamples=resamples)
            adjusted = stats.holm({c.variant: c.p_value for c in per_task})
            for c in per_task:
                c.p_holm = adjusted[c.variant]
                c.p_min_holm = stats.holm_p_min(c.p_min, len(per_task))
            comparisons.extend(per_task)

    main = scores.groupby(["variant", "task"])["main_score"].mean().unstack()
    summary: dict[str, Any] = {}
    for variant in variants:
        if control not in main.index:
            break
        deltas = (main.loc[variant] - main.loc[control]).dropna().to_dict()
        summary[variant] = stats.across_tasks(deltas, n_resamples=resamples)
    finite = {v: s.p_value for v, s in summary.items() if not np.isnan(s.p_value)}
    summary_holm = stats.holm(finite) if finite else {}
    return comparisons, {"across": summary, "holm": summary_holm, "n_resamples": resamples,
                         "family_size": len(variants)}
