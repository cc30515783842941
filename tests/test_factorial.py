"""Grid recipes get a factorial analysis (issue 20): a synthetic 2x2 grid with a known additive effect and a
known interaction, written as results/ files, recovers both inside their CIs in report.md; a grid without
effects keeps the calibrated false-positive rate; a one-way recipe gets no factorial section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.report.factorial import MEAN_TASK, Grid, analyse, contrasts, find_grid
from harness.report.report import write_report
from harness.report.seeds import contrast_test
from harness.report.significance import TaskArms, load_recipe

A, B = "train.lr", "data.hard_negatives"
BASE = {"train": {"lr": 0.0001}, "data": {"hard_negatives": 1}}
LEVELS = {A: [0.0001, 0.0002], B: [1, 3]}
TASKS = ("SimRetrievalA", "SimRetrievalB")


def _cell_shift(a: int, b: int) -> float:
    """Known truth: lr main 0.04, hard negatives 0.02, their interaction 0.03 (a and b are level indices)."""
    return 0.04 * a + 0.02 * b + 0.03 * a * b


def _write_grid(root: Path, rng: np.random.Generator, seeds: int, n_units: int = 400) -> Path:
    recipe = root / "grid"
    theta = {task: rng.uniform(0.2, 0.8, n_units) for task in TASKS}
    for a, lr in enumerate(LEVELS[A]):
        for b, negatives in enumerate(LEVELS[B]):
            name = "base" if (a, b) == (0, 0) else f"lr={lr},hard_negatives={negatives}"
            overrides = {} if name == "base" else {A: lr, B: negatives}
            (recipe / name).mkdir(parents=True)
            (recipe / name / "config.yaml").write_text(yaml.safe_dump(
                {"overrides": overrides, "config": BASE, "variant_hash": name}))
            interaction = {task: rng.normal(0, 0.03, n_units) for task in TASKS}
            for seed in range(seeds):
                run = recipe / name / f"seed-{seed}"
                run.mkdir()
                shift = rng.normal(0, 0.002) if seeds > 1 else 0.0  # one seed: unit noise only, as its test
                frames, scores = [], {}
                for task in TASKS:
                    values = theta[task] + interaction[task] + _cell_shift(a, b) + shift + rng.normal(0, 0.05, n_units)
                    frames.append(pd.DataFrame({"task": task, "subset": "default", "split": "test",
                                                "unit": [f"q{u:04d}" for u in range(n_units)],
                                                "metric": "ndcg_at_10", "value": values}))
                    score = float(values.mean())
                    scores[task] = {"type": "Retrieval", "main_metric": "ndcg_at_10", "main_score": score,
                                    "subsets": {"default": {"main_score": score}}}
                pd.concat(frames).to_parquet(run / "units.parquet")
                (run / "scores.json").write_text(json.dumps({"model_name": name, "seed": seed, "tasks": scores}))
    return recipe


@pytest.mark.parametrize("seeds", [1, 2])
def test_known_main_effects_and_interaction_are_recovered(tmp_path: Path, seeds: int) -> None:
    recipe = _write_grid(tmp_path, np.random.default_rng(10 + seeds), seeds)
    data = load_recipe(recipe)
    grid = find_grid(data.configs, "base")
    assert isinstance(grid, Grid) and grid.axes == {B: ["1", "3"], A: ["0.0001", "0.0002"]}
    tasks = {t: e.scores for t, e in data.tasks.items() if isinstance(e, TaskArms)}
    truth = {f"{A}: 0.0002 vs 0.0001": 0.04 + 0.03 / 2, f"{B}: 3 vs 1": 0.02 + 0.03 / 2,
             f"{B} × {A}: 3, 0.0002": 0.03}
    effects = analyse(grid, tasks, n_resamples=2000)
    assert {(e.task, e.effect) for e in effects} == {(t, name) for t in (*TASKS, MEAN_TASK) for name in truth}
    for e in effects:
        assert e.ci_low < truth[e.effect] < e.ci_high, e
        assert e.p_holm < 0.01  # every effect is large against the noise (floor: 3 x 2/2001)
    write_report(recipe)
    report = (recipe / "report.md").read_text()
    assert "## Factorial analysis (grid)" in report
    assert any(line.startswith(f"| {MEAN_TASK} ") and f"| {B} × {A}: 3, 0.0002 " in line for line in report.splitlines())
    assert (recipe / "plots" / f"interaction_{B}_x_{A}.png").is_file()
    assert "## Per-task tests" in report  # the arm-vs-control table stays beside it


def test_a_grid_without_effects_keeps_the_false_positive_rate() -> None:
    grid = Grid({"x": ["0", "1"], "y": ["0", "1"]}, {("0", "0"): "c00", ("0", "1"): "c01", ("1", "0"): "c10",
                                                      ("1", "1"): "c11"})
    plan = contrasts(grid)
    assert [kind for _, kind, _ in plan] == ["main", "main", "interaction"]
    rng = np.random.default_rng(7)
    n, k, runs = 200, 2, 500
    rejections = np.zeros(len(plan))
    for _ in range(runs):
        theta = rng.uniform(0.2, 0.8, n)
        cells = {v: theta + rng.normal(0, 0.03, n) + rng.normal(0, 0.004, (k, 1)) + rng.normal(0, 0.05, (k, n))
                 for v in grid.cells.values()}
        for i, (_, _, weights) in enumerate(plan):
            rejections[i] += contrast_test([cells[v] for v in weights], list(weights.values())).p_value < 0.05
    rates = rejections / runs
    assert all(0.03 <= r <= 0.07 for r in rates), rates  # Monte-Carlo sd ~1 point per effect at 500 runs
    assert math.isclose(sum(abs(w) for w in plan[2][2].values()), 4.0)


def test_incomplete_grids_and_one_way_recipes() -> None:
    base = {"overrides": {}, "config": BASE}
    one_way = {"base": base, "lr=2e-4": {"overrides": {A: 0.0002}, "config": BASE}}
    assert find_grid(one_way, "base") is None
    partial = {"base": base, "a": {"overrides": {A: 0.0002, B: 3}, "config": BASE},
               "b": {"overrides": {A: 0.0002, B: 1}, "config": BASE}}
    reason = find_grid(partial, "base")
    assert isinstance(reason, str) and "1 cell(s) missing (3/0.0001)" in reason
    # a named variant of a one-way recipe that sets two keys at once (quickstart's no-tables) is no grid
    named = {**one_way, "no-tables": {"overrides": {"data.a": 0, "data.b": 0}, "config": BASE}}
    assert find_grid(named, "base") is None
