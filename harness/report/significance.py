"""Paired comparisons of each variant with the control, from results/ files alone.

Units (queries, sentences, pairs) are aligned by id across arms, so every test is paired.
Several training seeds per arm switch the per-task test to the seed-aware two-level
bootstrap; one seed falls back to unit noise only, and the test name says which was used.
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
    p_holm: float = float("nan")


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


def _aligned(frames: list[pd.DataFrame], reference: pd.Index) -> list[np.ndarray]:
    return [f.set_index(KEYS)["value"].reindex(reference).to_numpy(dtype=float) for f in frames]


def compare_task(task: str, task_type: str, main_metric: str, control: list[pd.DataFrame],
                 variant: list[pd.DataFrame], variant_name: str, *, seed: int = 0,
                 n_resamples: int = 2000) -> TaskComparison | None:
    """Variant vs control on one task; None when the task has no per-unit scores."""
    pick = unit_metric(task_type, main_metric, set(control[0]["metric"]) & set(variant[0]["metric"]))
    if pick is None:
        return None
    metric, kind = pick

    def select(frames: list[pd.DataFrame], name: str) -> list[pd.DataFrame]:
        return [f[(f.task == task) & (f.metric == name)] for f in frames]

    ctrl, var = select(control, metric), select(variant, metric)
    common = ctrl[0].set_index(KEYS).index
    for frame in [*ctrl[1:], *var]:
        common = common.intersection(frame.set_index(KEYS).index)
    common = common.sort_values()
    c_arrays, v_arrays = _aligned(ctrl, common), _aligned(var, common)
    if kind == "spearman":
        gold = _aligned(select(control, "gold")[:1], common)[0]
        res = stats.compare_units(np.mean(c_arrays, axis=0), np.mean(v_arrays, axis=0), kind="spearman",
                                  gold=gold, seed=seed, n_resamples=n_resamples)
        return TaskComparison(variant_name, task, f"{metric} (spearman)", res.n_units, (len(ctrl), len(var)),
                              res.control_value, res.variant_value, res.delta, res.ci_low, res.ci_high, res.p_value,
                              f"{res.ci_test}; {res.p_test}", (float("nan"), float("nan")), res.min_detectable_effect)
    if len(ctrl) > 1 or len(var) > 1:
        sc = stats.compare_seeds(c_arrays, v_arrays, seed=seed, n_resamples=n_resamples)
        mde = sc.query_noise_only.min_detectable_effect
        return TaskComparison(variant_name, task, metric, sc.n_units, (len(ctrl), len(var)),
                              float(np.mean(c_arrays)), float(np.mean(v_arrays)), sc.delta, sc.ci_low, sc.ci_high,
                              sc.p_value, sc.test, (sc.control_seed_std, sc.variant_seed_std), mde)
    res = stats.compare_units(c_arrays[0], v_arrays[0], kind="mean", seed=seed, n_resamples=n_resamples)
    return TaskComparison(variant_name, task, metric, res.n_units, (1, 1), res.control_value, res.variant_value,
                          res.delta, res.ci_low, res.ci_high, res.p_value, f"{res.ci_test}; {res.p_test}",
                          (float("nan"), float("nan")), res.min_detectable_effect)


def compare_recipe(recipe_dir: Path, scores: pd.DataFrame, *, control: str = CONTROL_NAME,
                   n_resamples: int = 2000) -> tuple[list[TaskComparison], dict[str, Any]]:
    """Every variant vs the control on every task (Holm-corrected per task across variants),
    plus the across-task summary per variant (Holm-corrected across variants)."""
    units = load_recipe_units(recipe_dir)
    meta = scores.drop_duplicates("task").set_index("task")
    variants = sorted(v for v in scores["variant"].unique() if v != control)
    seeds = scores.groupby("variant")["seed"].unique().to_dict()
    comparisons: list[TaskComparison] = []
    for task in sorted(scores["task"].unique()):
        per_task = []
        for variant in variants:
            ctrl = [units[(control, s)] for s in sorted(seeds.get(control, [])) if (control, s) in units]
            var = [units[(variant, s)] for s in sorted(seeds[variant]) if (variant, s) in units]
            if not ctrl or not var:
                continue
            result = compare_task(task, meta.at[task, "type"], meta.at[task, "main_metric"], ctrl, var, variant,
                                  n_resamples=n_resamples)
            if result is not None:
                per_task.append(result)
        adjusted = stats.holm({c.variant: c.p_value for c in per_task}) if per_task else {}
        for c in per_task:
            c.p_holm = adjusted[c.variant]
        comparisons.extend(per_task)

    main = scores.groupby(["variant", "task"])["main_score"].mean().unstack()
    summary: dict[str, Any] = {}
    for variant in variants:
        if control not in main.index:
            break
        deltas = (main.loc[variant] - main.loc[control]).dropna().to_dict()
        summary[variant] = stats.across_tasks(deltas, n_resamples=n_resamples)
    finite = {v: s.p_value for v, s in summary.items() if not np.isnan(s.p_value)}
    summary_holm = stats.holm(finite) if finite else {}
    return comparisons, {"across": summary, "holm": summary_holm}
