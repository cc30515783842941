"""ablate's one line over the sweep: counts runs from the pipeline's own log lines, ETA scaled by
how finished runs compared with their estimates."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from harness.cli.progress import SweepProgress


def _plan(name: str) -> SimpleNamespace:
    return SimpleNamespace(variant=SimpleNamespace(name=name))


def test_progress_line_follows_the_pipeline_log(capsys) -> None:  # noqa: ANN001
    estimates = {"base": SimpleNamespace(train_seconds=60.0, eval_seconds=60.0),
                 "other": SimpleNamespace(train_seconds=30.0, eval_seconds=30.0)}
    stream = io.StringIO()
    progress = SweepProgress([_plan("base"), _plan("other")], estimates, stream=stream)
    assert progress.eta() == pytest.approx(180.0, abs=1.0)  # nothing finished: the plain estimates
    progress.log("[1/2] base (seed 0, variant abc)")
    progress.log("  train  123  trained: 4 steps")
    assert progress.stage == "run 1: base train"
    progress.log("[2/2] other (seed 0, variant def)")
    assert progress.done == 1 and progress.stage == "run 2: other data"
    progress.spent_done, progress.estimated_done = 240.0, 120.0  # the first run took twice its estimate
    assert 110.0 < progress.eta() <= 120.0  # the 60 s left of run 2, doubled, minus the time since it began
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("sweep: 0/2 runs done · run 1: base data")
    assert lines[-1].startswith("sweep: 2/2 runs done · finished")
    assert "[2/2] other" in capsys.readouterr().out  # the log lines themselves still go to stdout
