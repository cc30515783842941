"""Pair classification is tested on its own statistic: the AP bootstrap over pairs equals a loop of
sklearn's average_precision_score on the same resampled pairs (ties included)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from harness.report.paired import average_precision_bootstrap, compare_units


def test_ap_bootstrap_matches_a_loop_over_sklearn() -> None:
    rng = np.random.default_rng(3)
    n, b = 200, 300
    labels = (rng.uniform(size=n) < 0.4).astype(float)
    control = np.round(labels + rng.normal(0, 1.0, n), 1)  # rounded: tied scores
    variant = np.round(labels + rng.normal(0, 0.5, n), 1)
    result = average_precision_bootstrap(control, variant, labels, n_resamples=b, seed=9)
    assert result.control_corr == pytest.approx(average_precision_score(labels, control))
    assert result.variant_corr == pytest.approx(average_precision_score(labels, variant))
    idx = np.random.default_rng(9).integers(0, n, size=(b, n))  # the documented draw (one chunk)
    boot = np.array([average_precision_score(labels[i], variant[i]) - average_precision_score(labels[i], control[i])
                     for i in idx if labels[i].sum() > 0])
    assert (result.interval.low, result.interval.high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert result.p_value < 0.05 and result.delta > 0
    same = compare_units(control, control, kind="average_precision", gold=labels, n_resamples=b)
    assert same.delta == 0 and same.p_value == 1.0
