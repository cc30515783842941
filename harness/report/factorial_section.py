"""report.md's factorial section for grid recipes: one effects table and one interaction plot per axis pair."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np
from harness.text_table import markdown_table

from harness.paths import CONTROL_NAME
from harness.report import families
from harness.report.factorial import Grid, analyse, find_grid
from harness.report.plots import interaction_plot

if TYPE_CHECKING:
    from harness.report.significance import RecipeData


def _signed(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{100 * value:+.2f}"


def _p(value: float) -> str:
    return "–" if not math.isfinite(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def factorial_lines(data: RecipeData, *, n_resamples: int | None = None) -> list[str]:
    """The section's markdown lines (empty for a one-way recipe, which keeps the arm-vs-control table)."""
    from harness.report.significance import TaskArms

    grid = find_grid(data.configs, CONTROL_NAME)
    if grid is None:
        return []
    lines = ["## Factorial analysis (grid)", ""]
    if isinstance(grid, str):
        return [*lines, f"No factorial analysis: {grid}.", ""]
    variants = set(grid.cells.values())
    tasks, left_out = {}, []
    for task, entry in data.tasks.items():
        if isinstance(entry, TaskArms) and entry.kind == "mean" and variants <= set(entry.scores):
            tasks[task] = {v: entry.scores[v] for v in variants}
        else:
            left_out.append(task)
    if not tasks:
        return [*lines, "No task has per-unit mean scores in every cell: no factorial analysis.", ""]
    b = n_resamples or families.resamples_for_family(len(grid.cells))
    effects = analyse(grid, tasks, n_resamples=b)
    axes_text = "; ".join(f"`{a}`: {', '.join(levels)} (reference {levels[0]})" for a, levels in grid.axes.items())
    lines += [f"Axes: {axes_text}. Main effect = each level vs the axis's reference (its base value), averaged over "
              "the other axes' levels; interaction = the difference of differences, averaged over the remaining "
              "axes. Per-unit metric x100. p (Holm): corrected within each task's family of effects (and within "
              "Mean(Task)'s). Tests: " + "; ".join(sorted({e.test for e in effects})) + ".", ""]
    if left_out:
        lines += [f"Not in the factorial analysis (no per-unit mean scores in every cell): {', '.join(left_out)}.", ""]
    rows = [[e.task, e.effect, _signed(e.estimate), f"[{_signed(e.ci_low)}, {_signed(e.ci_high)}]", _p(e.p_value),
             _p(e.p_holm), families.significance_mark(e.p_holm)] for e in effects]
    lines += [markdown_table(rows, ["task", "effect", "estimate", "95% CI", "p", "p (Holm)", "sig"]), ""]
    lines += _interaction_plots(data, grid, tasks)
    return lines


def _interaction_plots(data: RecipeData, grid: Grid, tasks: dict[str, dict[str, np.ndarray]]) -> list[str]:
    names = list(grid.axes)
    cell = {key: 100 * float(np.mean([tasks[t][v].mean() for t in tasks])) for key, v in grid.cells.items()}
    lines = []
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        means = {}
        for la in grid.axes[a]:
            for lb in grid.axes[b]:
                values = [m for key, m in cell.items() if key[i] == la and key[j] == lb]
                means[(la, lb)] = float(np.mean(values))
        file = data.recipe_dir / "plots" / f"interaction_{a}_x_{b}.png".replace("/", "_")
        interaction_plot(a, grid.axes[a], b, grid.axes[b], means, file)
        lines += [f"Interaction of `{a}` and `{b}` (Mean(Task), other axes averaged; parallel lines = none):", "",
                  f"![{a} x {b}](plots/{file.name})", ""]
    return lines
