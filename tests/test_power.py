"""Power planning checked against simulations of its own variance model, through results/ files.

Data follow harness.report.power's model: y[a, s, u] = mu_a + theta_u + delta[a, u] + g[a, s] + r[a, s, u]
(unit difficulty shared by all arms, arm x unit interaction, a seed effect per arm and seed, residual).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.cli import main
from harness.report import power
from harness.report.seeds import two_level_test
from harness.report.report import SETTINGS_KEY, write_report

SD_UNIT, SD_SEED, SD_RESID = 0.15, 0.01, 0.2  # paired unit sd, seed sd, seed x unit residual sd
TASK, METRIC = "SimRetrieval", "ndcg_at_10"


def simulate(rng: np.random.Generator, n_units: int, arms: dict[str, tuple[float, int]], *, sd_unit: float = SD_UNIT,
             sd_seed: float = SD_SEED, sd_resid: float = SD_RESID) -> dict[str, np.ndarray]:
    """arm -> (seeds x units) scores for arms given as name -> (true mean shift, seeds)."""
    theta = rng.uniform(0.2, 0.8, n_units)
    out = {}
    for arm, (shift, seeds) in arms.items():
        interaction = rng.normal(0, sd_unit / math.sqrt(2), n_units)  # the difference of two arms: sd_unit
        seed_effect = rng.normal(0, sd_seed, (seeds, 1))
        out[arm] = shift + theta + interaction + seed_effect + rng.normal(0, sd_resid, (seeds, n_units))
    return out


def write_results(root: Path, arms: dict[str, np.ndarray]) -> Path:
    """A results/<recipe>/ folder in the harness's own format: scores.json + units.parquet per seed."""
    recipe = root / "sim"
    for arm, matrix in arms.items():
        for seed, row in enumerate(matrix):
            run = recipe / arm / f"seed-{seed}"
            run.mkdir(parents=True)
            pd.DataFrame({"task": TASK, "subset": "default", "split": "test",
                          "unit": [f"q{u:05d}" for u in range(row.size)], "metric": METRIC,
                          "value": row}).to_parquet(run / "units.parquet")
            score = float(row.mean())
            (run / "scores.json").write_text(json.dumps({"model_name": f"sim/{arm}", "seed": seed, "tasks": {
                TASK: {"type": "Retrieval", "main_metric": METRIC, "main_score": score,
                       "subsets": {"default": {METRIC: score, "main_score": score}}}}}))
    return recipe


def _simulated_power(rng: np.random.Generator, delta: float, n_units: int, seeds: int, runs: int, *,
                     sd_seed: float = SD_SEED) -> float:
    """Share of simulated experiments (fresh units, seeds and noise, the two-level design at ``seeds`` per
    arm) in which the report's own per-task test, ``seeds.two_level_test``, gives p < 0.05."""
    rejected = 0
    for _ in range(runs):
        experiment = simulate(rng, n_units, {"base": (0.0, seeds), "v": (delta, seeds)}, sd_seed=sd_seed)
        rejected += two_level_test(experiment["base"], experiment["v"]).p_value < 0.05
    return rejected / runs


def test_estimate_components_recovers_known_variances() -> None:
    rng = np.random.default_rng(0)
    # Many seeds pin down the seed variance ...
    many_seeds = power.estimate_components(simulate(rng, 500, {"base": (0, 60), "a": (0.01, 60), "b": (0, 60),
                                                               "c": (-0.01, 60)}, sd_seed=0.02))
    assert math.sqrt(many_seeds.seed_var) == pytest.approx(0.02, rel=0.15)
    assert math.sqrt(many_seeds.resid_var) == pytest.approx(SD_RESID, rel=0.02)
    # ... and two seeds on many units test the residual correction of the paired unit variance:
    # var(d) is SD_UNIT^2 + SD_RESID^2 (1/2 + 1/2) = 0.0625, 2.8x the 0.0225 the model separates out.
    two_seeds = power.estimate_components(simulate(rng, 5000, {"base": (0, 2), "a": (0.01, 2), "b": (0, 2),
                                                               "c": (-0.01, 2)}))
    assert two_seeds.unit_var == pytest.approx(SD_UNIT**2, rel=0.1)
    assert two_seeds.resid_var == pytest.approx(SD_RESID**2, rel=0.05)
    design = (two_seeds.n_units, two_seeds.seeds_control, two_seeds.seeds_variant, two_seeds.n_variants)
    assert design == (5000, 2, 2, 3)


def test_standard_error_matches_the_simulated_spread_and_the_test() -> None:
    rng = np.random.default_rng(6)
    n, k = 100, 5
    truth = power.Components(n, k, k, SD_UNIT**2, SD_SEED**2, SD_RESID**2, 1)
    se, df = power.standard_error(truth, n, k, k)
    deltas, test_variances, dfs = [], [], []
    for _ in range(300):
        experiment = simulate(rng, n, {"base": (0.0, k), "v": (0.0, k)})
        result = two_level_test(experiment["base"], experiment["v"])
        deltas.append(result.delta)
        test_variances.append(result.standard_error**2)
        dfs.append(result.df)
    assert np.std(deltas) == pytest.approx(se, rel=0.1)  # the model's Var(delta_hat)
    assert math.sqrt(np.mean(test_variances)) == pytest.approx(se, rel=0.05)  # the test estimates that variance
    assert np.median(dfs) == pytest.approx(df, rel=0.25)  # and the plan uses the test's df


def test_planned_seeds_reach_the_target_power_in_simulation() -> None:
    rng = np.random.default_rng(1)
    # A seed-rich pilot (3 arms x 200 seeds) so the estimated variances are within a few % of the truth;
    # the results/ file path of the same estimate is the CLI test's.
    pilot = simulate(rng, 100, {"base": (0, 200), "a": (0.01, 200), "b": (-0.01, 200)})
    delta = 0.062
    plan = power.plan_task(TASK, METRIC, power.estimate_components(pilot), delta)
    truth = power.Components(100, 200, 200, SD_UNIT**2, SD_SEED**2, SD_RESID**2, 2)
    k = plan.seeds_needed
    assert k is not None and abs(k - power.seeds_needed(truth, delta)) <= 1 and 5 <= k <= 15  # a real plan
    # Simulate the two-level design at the planned seeds, tested as the report does: 80% +- 5 points.
    assert _simulated_power(rng, delta, 100, k, runs=400) == pytest.approx(0.8, abs=0.05)


def test_planned_units_reach_the_target_power_in_simulation() -> None:
    rng = np.random.default_rng(2)
    sd_seed = 0.003  # little seed noise: units are what the plan can buy
    pilot = simulate(rng, 1000, {"base": (0, 50), "a": (0.0, 50), "b": (0.01, 50)}, sd_seed=sd_seed)
    delta = 0.04
    n = power.units_needed(power.estimate_components(pilot), delta, seeds=(4, 4))
    assert n is not None and 200 <= n <= 600
    assert _simulated_power(rng, delta, n, 4, runs=300, sd_seed=sd_seed) == pytest.approx(0.8, abs=0.05)


def test_mde_and_plans_follow_the_formula() -> None:
    c = power.Components(n_units=400, seeds_control=3, seeds_variant=3, unit_var=0.01, seed_var=1e-5,
                         resid_var=0.04, n_variants=1)
    level = 1e-5 + 0.04 / 400
    se = math.sqrt(0.01 / 400 + 2 * level / 3)
    seed_term, unit_term = 2 * level / 3, 0.01 / 400
    guarded = seed_term * 4 / sps.chi2.ppf(0.25, 4)
    df = (guarded + unit_term) ** 2 / (guarded**2 / 4 + unit_term**2 / 399)
    plan = power.plan_task("T", "m", c, delta=0.02)
    assert (plan.standard_error, plan.df) == pytest.approx((se, df))
    assert plan.mde == pytest.approx(sps.t.ppf(0.975, df) * se + sps.norm.ppf(0.8) * se)
    # the plans are the smallest seeds / units whose MDE reaches delta
    k = plan.seeds_needed
    assert k is not None
    assert power.detectable_effect(c, 400, k, k) <= 0.02 < power.detectable_effect(c, 400, k - 1, k - 1)
    n = plan.units_needed
    assert n is not None and power.detectable_effect(c, n, 3, 3) <= 0.02 < power.detectable_effect(c, n - 1, 3, 3)
    # A delta below what the units allow: no number of seeds helps, and the plan says so.
    tiny = power.plan_task("T", "m", c, delta=0.002)
    assert tiny.seeds_needed is None and "unit-limited" in tiny.note
    # More seed variance than the budget: no number of units helps at 3 seeds.
    noisy_seeds = power.Components(400, 3, 3, 0.01, 4e-4, 0.04, 1)
    assert power.units_needed(noisy_seeds, 0.02) is None
    assert "seed-limited" in power.plan_task("T", "m", noisy_seeds, delta=0.02).note
    assert power.seeds_needed(c, 0.02, alpha=0.01, power=0.9) > k


def test_one_seed_per_arm_plans_units_from_unit_noise_only() -> None:
    rng = np.random.default_rng(3)
    arms = simulate(rng, 800, {"base": (0, 1), "a": (0.01, 1)})
    c = power.estimate_components(arms)
    d = arms["a"][0] - arms["base"][0]
    assert not c.seeds_known and c.unit_var == pytest.approx(d.var(ddof=1))
    plan = power.plan_task(TASK, METRIC, c, delta=0.03)
    assert plan.seeds_needed is None and "one seed per arm" in plan.note
    assert plan.standard_error == pytest.approx(d.std(ddof=1) / math.sqrt(800)) and plan.df == math.inf
    multiplier = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert plan.units_needed == math.ceil(c.unit_var / (0.03 / multiplier) ** 2)


def test_power_command_and_report_print_the_same_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    arms = {"base": (0, 3), "small": (0.005, 3), "large": (0.3, 3)}
    recipe = write_results(tmp_path, simulate(rng, 300, arms, sd_unit=0.05, sd_seed=0.002, sd_resid=0.1))
    assert main(["power", str(recipe)]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith(f"| {TASK}"))
    (plan,) = power.plan_recipe(recipe, power.REPORT_DELTA_POINTS / 100)
    assert plan.seeds_needed is not None and plan.units_needed is not None
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == [TASK, METRIC, "300", "3/3"]
    assert cells[9:12] == [f"{100 * plan.mde:.2f}", str(plan.seeds_needed), str(plan.units_needed)]

    write_report(recipe)
    report = (recipe / "report.md").read_text()
    assert "## Power" in report and row in report.splitlines()
    # The resample count follows the family (2 variants -> 10,000) and the report states its floor.
    assert "Resamples: 10000 per test" in report and "no resampling floor" in report
    assert "*** is attainable" in report
    large = next(line for line in report.splitlines() if line.startswith("| large ") and TASK in line)
    assert "| ***" in large  # a huge effect reaches *** after Holm over 2 variants
    significance = json.loads((recipe / "significance.json").read_text())
    assert significance[SETTINGS_KEY]["n_resamples"] == 10_000
    entry = significance["large"]["tasks"][TASK]
    assert entry["p_min"] == entry["p_min_holm"] == 0 and entry["p_holm"] < 0.001
    assert entry["unit_metric"] == METRIC and "two-level t-test" in entry["test"]
    across = significance["large"]["across"]  # one task: no across-task test, and it says so
    assert across["n_tasks"] == 1 and across["p"] is None and "not run" in across["test"]


def test_power_command_rejects_bad_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_results(tmp_path, simulate(np.random.default_rng(5), 50, {"base": (0, 2), "a": (0.0, 2)}))
    assert main(["power", str(recipe), "--power", "1.5"]) == 2
    assert "--power must be between 0 and 1" in capsys.readouterr().err
    assert main(["power", str(recipe), "--delta", "-1"]) == 2
    assert "--delta must be a positive number" in capsys.readouterr().err
    assert main(["power", str(tmp_path / "missing")]) == 2
    assert "no such results folder" in capsys.readouterr().err


def test_report_with_an_sts_task_and_a_control_only_recipe(tmp_path: Path) -> None:
    """Correlation metrics go through the correlation bootstrap (and are not planned); a recipe without
    variants still gets a report, just without tests or a Power section."""
    rng = np.random.default_rng(7)
    gold = rng.uniform(0, 5, 120)
    recipe = tmp_path / "sts"
    for arm, noise in (("base", 2.0), ("better", 0.5)):
        for seed in range(2):
            run = recipe / arm / f"seed-{seed}"
            run.mkdir(parents=True)
            prediction = gold + rng.normal(0, noise, gold.size)
            frames = [pd.DataFrame({"task": "SimSTS", "subset": "default", "split": "test",
                                    "unit": [f"p{i:03d}" for i in range(gold.size)], "metric": metric,
                                    "value": values}) for metric, values in (("similarity", prediction), ("gold", gold))]
            pd.concat(frames).to_parquet(run / "units.parquet")
            score = float(sps.spearmanr(prediction, gold)[0])
            (run / "scores.json").write_text(json.dumps({"model_name": arm, "seed": seed, "tasks": {"SimSTS": {
                "type": "STS", "main_metric": "cosine_spearman", "main_score": score,
                "subsets": {"default": {"main_score": score}}}}}))
    write_report(recipe)
    report = (recipe / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| better ") and "SimSTS" in line)
    assert "similarity (spearman)" in row and "| ***" in row  # one variant: B = 10,000, floor 0.0002
    assert "spearman correlation difference" in report and "## Power" not in report

    for path in sorted((recipe / "better").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (recipe / "better").rmdir()
    write_report(recipe)
    report = (recipe / "report.md").read_text()
    assert "## Scores" in report and "## Per-task tests" not in report and "## Power" not in report
