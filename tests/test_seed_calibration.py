"""The multi-seed per-task test holds its level: under a true null its false-positive rate at
alpha = 0.05 stays in [3 %, 7 %] (issue 20). A cheap subset of bench/bench_seed_calibration.py's
table: 2 and 3 seeds per arm, seed sd 0 and 5x the unit-noise standard error, unit noise that
repeats across an arm's seeds plus a seed x unit residual (the "mixed" shape)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report.seeds import two_level_test

N_UNITS, RUNS = 200, 1000
SD_UNIT, SD_RESID = 0.05, 0.05


def _false_positive_rate(k: int, seed_sd_multiple: float) -> float:
    rng = np.random.default_rng([k, int(10 * seed_sd_multiple)])
    se = math.sqrt(SD_UNIT**2 + 2 * SD_RESID**2) / math.sqrt(N_UNITS)  # one seed's unit-level standard error
    hits = 0
    for _ in range(RUNS):
        theta = rng.uniform(0.2, 0.8, N_UNITS)
        arms = [theta + rng.normal(0, SD_UNIT / math.sqrt(2), N_UNITS) + rng.normal(0, seed_sd_multiple * se, (k, 1))
                + rng.normal(0, SD_RESID, (k, N_UNITS)) for _ in range(2)]
        hits += two_level_test(arms[0], arms[1]).p_value < 0.05
    return hits / RUNS


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("multiple", [0.0, 5.0])
def test_two_level_test_holds_its_level_under_a_true_null(k: int, multiple: float) -> None:
    # 1,000 runs: Monte-Carlo sd 0.7 points at 5 %; the bench measured 3.6-5.8 % on 2,000 runs per cell.
    assert 0.03 <= _false_positive_rate(k, multiple) <= 0.07
