"""`ablate --executor submitit-local`: every run as a submitit job, the parent reports after all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

from .conftest import write

RECIPE = """
seeds: [0]
base:
  model: {backbone: tiny-qwen2, query_max_length: 24, passage_max_length: 32}
  data: {total_rows: 32, sources: {stdlib-code: {}, cldr-bitext: {langs: [yo]}}}
  train: {steps: 2, batch_size: 4, lr: 1.0e-3}
  eval: {tasks: [HarnessCLDRBitextMining]}
ablate:
  train.lr: [2.0e-3]
"""


@pytest.mark.slow
def test_submitit_local_executor_runs_every_variant_as_a_job(tmp_path: Path, fresh_cache: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("submitit")
    recipe = write(tmp_path / "jobs.yaml", RECIPE)
    results = tmp_path / "results"
    assert main(["ablate", str(recipe), "--executor", "submitit-local", "--results", str(results),
                 "--leaderboard", str(tmp_path / "lb.md"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("submitted ") == 2 and out.count("finished ") == 2
    for variant in ("base", "lr=0.002"):
        scores = json.loads((results / "jobs" / variant / "seed-0" / "scores.json").read_text())
        assert "HarnessCLDRBitextMining" in scores["tasks"]
    assert (results / "jobs" / "report.md").is_file() and "[jobs](" in (tmp_path / "lb.md").read_text()
    assert any((fresh_cache / "submitit" / "jobs").iterdir())  # submitit's job logs live in the cache
    # the same recipe run here afterwards finds every stage cached
    assert main(["ablate", str(recipe), "--results", str(results), "--no-leaderboard", "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert "trained:" not in again and again.count("cached") == 2 * 3
