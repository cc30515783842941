"""Factorial analysis of a grid recipe (`mode: grid`): main effects and two-way interactions.

A grid's variants are the cells of a full factorial; each axis's reference level is its base value
(the control's). Effects are contrasts of cell means, estimated per task on the task's per-unit metric
(seed-averaged per cell) and on Mean(Task):

- main effect of axis A at level a: the mean over every level combination of the other axes of
  cell(A=a) - cell(A=ref);
- interaction of A at a with B at b: the mean over the other axes' levels of
  cell(a, b) - cell(a, ref_B) - cell(ref_A, b) + cell(ref_A, ref_B).

Each effect is tested with the arm tests' model: with one seed per cell, a paired bootstrap CI and the
sign-flip randomisation test on the per-unit contrast d_u (``paired.compare_units``); with several seeds,
the two-level t-test of the contrast (``seeds.contrast_test``). On Mean(Task) the per-task contrasts are
averaged (one seed per cell: tasks independent, Var = sum of the per-task variances / T²; several seeds:
the seed term from each seed's Mean(Task), since a seed shifts all tasks of its run at once). Holm
corrects within a family: one task's effects, or Mean(Task)'s. Tasks whose statistic is not a mean of
units (correlations, AP) are left out and listed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.report import families
from harness.report.paired import compare_units
from harness.report.results import config_value
from harness.report.seeds import contrast_test

MEAN_TASK = "Mean(Task)"


@dataclass(frozen=True)
class Grid:
    """A full factorial: axes with their levels (reference first) and the variant in each cell."""

    axes: dict[str, list[str]]  # axis -> level labels, reference (base value) first
    cells: dict[tuple[str, ...], str]  # level labels in axis order -> variant name


@dataclass
class Effect:
    task: str
    effect: str  # e.g. "lr: 1e-4 vs 5e-5" or "lr × hard_negatives: 1e-4, 0"
    kind: str  # "main" or "interaction"
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    p_holm: float = math.nan


def _label(value: Any) -> str:
    return "none" if value is None else str(value)


def find_grid(configs: Mapping[str, Mapping[str, Any]], control: str) -> Grid | str | None:
    """The grid in a recipe's variant configs; None for a one-way recipe, a reason if the grid is incomplete.

    ``mode: grid`` writes every axis into each cell's overrides, so grid cells are the variants that
    override the same set of two or more axes, with at least two levels on each; the control is the
    all-reference cell. Named variants that set several keys at once (one-way recipes) are no grid.
    """
    if control not in configs:
        return None
    base = configs[control].get("config") or {}
    by_keys: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    for variant, config in configs.items():
        o = dict(config.get("overrides") or {})
        if variant != control and len(o) >= 2:
            by_keys.setdefault(tuple(sorted(o)), {})[variant] = o
    best: Grid | str | None = None
    for axis_names, members in sorted(by_keys.items(), key=lambda item: -len(item[1])):
        levels: dict[str, list[str]] = {a: [_label(config_value(base, a))] for a in axis_names}
        cells: dict[tuple[str, ...], str] = {tuple(levels[a][0] for a in axis_names): control}
        for variant, o in sorted(members.items()):
            key = tuple(_label(o[a]) for a in axis_names)
            for a, value in zip(axis_names, key, strict=True):
                if value not in levels[a]:
                    levels[a].append(value)
            cells.setdefault(key, variant)
        if len(members) < 2 or any(len(values) < 2 for values in levels.values()):
            continue  # not a factorial: one named variant setting several keys, or a key that never changes
        missing = [combo for combo in itertools.product(*levels.values()) if combo not in cells]
        if not missing:
            return Grid(levels, cells)
        if best is None:
            shown = ", ".join("/".join(c) for c in missing[:3])
            best = (f"incomplete grid over {', '.join(axis_names)}: {len(missing)} cell(s) missing "
                    f"({shown}{', ...' if len(missing) > 3 else ''})")
    return best


def contrasts(grid: Grid) -> list[tuple[str, str, dict[str, float]]]:
    """(effect name, kind, variant -> weight) for every main-effect level and two-way interaction."""
    names = list(grid.axes)
    out = []
    for i, axis in enumerate(names):
        ref = grid.axes[axis][0]
        others = [grid.axes[a] for a in names if a != axis]
        n_other = math.prod(len(o) for o in others)
        for level in grid.axes[axis][1:]:
            weights: dict[str, float] = {}
            for key, variant in grid.cells.items():
                if key[i] in (level, ref):
                    weights[variant] = weights.get(variant, 0.0) + (1 if key[i] == level else -1) / n_other
            out.append((f"{axis}: {level} vs {ref}", "main", weights))
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        ref_a, ref_b = grid.axes[a][0], grid.axes[b][0]
        n_other = math.prod(len(grid.axes[c]) for c in names if c not in (a, b))
        for la in grid.axes[a][1:]:
            for lb in grid.axes[b][1:]:
                weights = {}
                for key, variant in grid.cells.items():
                    sign = {(la, lb): 1, (la, ref_b): -1, (ref_a, lb): -1, (ref_a, ref_b): 1}.get((key[i], key[j]))
                    if sign:
                        weights[variant] = weights.get(variant, 0.0) + sign / n_other
                out.append((f"{a} × {b}: {la}, {lb}", "interaction", weights))
    return out


def _task_effect(matrices: Mapping[str, np.ndarray], weights: Mapping[str, float], *, n_resamples: int,
                 confidence: float) -> tuple[float, float, float, float, str, float, float]:
    """(estimate, low, high, p, test, variance, df) of one contrast on one task."""
    variants = list(weights)
    cells = [matrices[v] for v in variants]
    w = [weights[v] for v in variants]
    if all(m.shape[0] == 1 for m in cells):
        d = sum(wi * m[0] for wi, m in zip(w, cells, strict=True))
        res = compare_units(np.zeros_like(d), d, n_resamples=n_resamples, confidence=confidence)
        variance = float(np.var(d, ddof=1)) / d.size
        return (res.delta, res.ci_low, res.ci_high, res.p_value, f"{res.ci_test}; {res.p_test}", variance,
                float(d.size - 1))
    t = contrast_test(cells, w, confidence=confidence)
    return t.delta, t.ci_low, t.ci_high, t.p_value, "two-level t-test of the contrast", t.standard_error**2, t.df


def analyse(grid: Grid, tasks: Mapping[str, Mapping[str, np.ndarray]], *, n_resamples: int = 10_000,
            confidence: float = 0.95) -> list[Effect]:
    """Every effect per task (tasks: task -> variant -> seeds x units, mean-kind metrics) and on Mean(Task)."""
    effects: list[Effect] = []
    pooled: dict[str, list[tuple[float, float, float]]] = {}
    plan = contrasts(grid)
    for task, matrices in sorted(tasks.items()):
        family = []
        for name, kind, weights in plan:
            estimate, low, high, p, test, variance, df = _task_effect(
                matrices, weights, n_resamples=n_resamples, confidence=confidence)
            family.append(Effect(task, name, kind, estimate, low, high, p, test))
            pooled.setdefault(name, []).append((estimate, variance, df))
        _holm(family)
        effects += family
    if len(tasks) > 1:
        family = [_mean_task_effect(name, kind, weights, tasks, pooled[name], confidence)
                  for name, kind, weights in plan]
        _holm(family)
        effects += family
    return effects


def _mean_task_effect(name: str, kind: str, weights: Mapping[str, float],
                      tasks: Mapping[str, Mapping[str, np.ndarray]], per_task: list[tuple[float, float, float]],
                      confidence: float) -> Effect:
    """The contrast on Mean(Task). One seed per cell: tasks independent, Var = sum of per-task variances / T².
    Several seeds: a seed shifts every task of its run at once, so the seed term comes from the variance
    of each seed's Mean(Task) within cells (pooled, as the two-level t-test) and the unit terms add up."""
    from scipy import stats

    from harness.report.seeds import pooled_seed_parts, two_level_df

    count = len(per_task)
    estimate = sum(e for e, _, _ in per_task) / count
    test = f"t-test on the mean of the {count} per-task contrasts"
    cells = list(weights)
    seeds = {v: next(iter(tasks.values()))[v].shape[0] for v in cells}
    if all(k == 1 for k in seeds.values()):
        variance = sum(v for _, v, _ in per_task) / count**2
        denominator = sum((v / count**2) ** 2 / df for _, v, df in per_task)
        df = variance**2 / denominator if denominator > 0 else math.inf
        test += " (tasks independent, unit noise only; Satterthwaite df)"
    else:
        seed_means = [np.mean([tasks[t][v].mean(axis=1) for t in tasks], axis=0)[:, None] for v in cells]
        s2, seed_df, _, _ = pooled_seed_parts(seed_means)
        h = sum(weights[v] ** 2 / seeds[v] for v in cells)
        unit_term = 0.0
        for matrices in tasks.values():
            _, _, ms_resid, _ = pooled_seed_parts([matrices[v] for v in cells])
            d = sum(weights[v] * matrices[v].mean(axis=0) for v in cells)
            unit_term += max(0.0, float(np.var(d, ddof=1)) - h * ms_resid) / d.size / count**2
        seed_term = h * s2
        variance = seed_term + unit_term
        n_min = min(next(iter(m.values())).shape[1] for m in tasks.values())
        df = two_level_df(seed_term, seed_df, unit_term, n_min - 1)
        test += " (two-level: seed variance of Mean(Task) per seed + the tasks' unit noise)"
    se = math.sqrt(variance)
    if se == 0:
        p, low, high = (1.0 if estimate == 0 else 0.0), estimate, estimate
    else:
        p = float(2 * stats.t.sf(abs(estimate) / se, df))
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
        low, high = estimate - half, estimate + half
    return Effect(MEAN_TASK, name, kind, estimate, low, high, p, test)


def _holm(family: list[Effect]) -> None:
    adjusted = families.holm({e.effect: e.p_value for e in family})
    for e in family:
        e.p_holm = adjusted[e.effect]

