"""With >= 6 tasks the across-task Wilcoxon can reach p < 0.05; with fewer the summary says it cannot
(issue 20), checked against scipy's exact test."""

from __future__ import annotations

import pytest
from scipy import stats as sps

from harness.report.families import across_tasks


@pytest.mark.parametrize("n_tasks", [5, 6, 8])
def test_wilcoxon_reaches_005_from_six_tasks_and_says_when_it_cannot(n_tasks: int) -> None:
    deltas = {f"T{i}": 0.01 * (i + 1) for i in range(n_tasks)}  # every task improves
    summary = across_tasks(deltas, n_resamples=500)
    assert summary.p_value == pytest.approx(sps.wilcoxon(list(deltas.values()), method="exact").pvalue)
    assert summary.p_min == pytest.approx(2.0 ** (1 - n_tasks))
    cannot = [note for note in summary.notes if "cannot reach 0.05" in note]
    if n_tasks >= 6:
        assert summary.p_value < 0.05 and not cannot
    else:
        assert summary.p_value > 0.05 and cannot and "0.0625" in cannot[0]
