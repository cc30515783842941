"""A tiny recipe through ablate -> results -> report -> leaderboard, on real data and real mteb runs.

tiny-qwen2 keeps it fast; the code path is the one Qwen2-0.5B takes (left padding, real Qwen2
tokenizer). Also: determinism, the cache hit of a second run, and partial re-runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main

from .conftest import write

TINY = """
description: tiny end-to-end recipe
seeds: [0]
base:
  model: {backbone: tiny-qwen2, pooling: mean, query_max_length: 32, passage_max_length: 64}
  data:
    total_rows: 64
    sources:
      stdlib-code: {weight: 1.0}
      cldr-bitext: {weight: 1.0, langs: [am, yo, fr]}
  train: {steps: 4, batch_size: 8, lr: 1.0e-3, log_every: 1}
  eval: {tasks: [HarnessCodeRetrieval, HarnessCLDRBitextMining], languages: [amh, yor, fra], batch_size: 64}
ablate:
  data.sources.cldr-bitext.weight: [0.0]
"""


def _ablate(recipe: Path, results: Path, board: Path, *extra: str) -> int:
    return main(["ablate", str(recipe), "--results", str(results), "--leaderboard", str(board), "--no-progress", *extra])


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_ablate_end_to_end_then_cache_hit(tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write(tmp_path / "tiny.yaml", TINY)
    results, board = tmp_path / "results", tmp_path / "leaderboard.md"

    assert _ablate(recipe, results, board) == 0
    first = capsys.readouterr().out
    assert "trained: 4 steps" in first and "wall time:" in first

    # results/<recipe>/<variant>/ holds small readable files for every variant
    for variant in ("base", "cldr-bitext.weight=0"):
        vdir = results / "tiny" / variant
        assert (vdir / "config.yaml").is_file()
        run = vdir / "seed-0"
        for name in ("data_card.json", "train_log.jsonl", "train_summary.json", "scores.json", "units.parquet", "run.json"):
            assert (run / name).is_file(), name
        scores = json.loads((run / "scores.json").read_text())["tasks"]
        assert set(scores) == {"HarnessCodeRetrieval", "HarnessCLDRBitextMining"}
        assert 0.0 <= scores["HarnessCodeRetrieval"]["main_score"] <= 1.0
        assert set(scores["HarnessCLDRBitextMining"]["subsets"]) == {"eng-amh", "eng-yor", "eng-fra"}  # eval.languages
        # per-unit scores reproduce mteb's aggregates
        units = pd.read_parquet(run / "units.parquet")
        ndcg = units[(units.task == "HarnessCodeRetrieval") & (units.metric == "ndcg_at_10")]["value"].mean()
        assert ndcg == pytest.approx(scores["HarnessCodeRetrieval"]["subsets"]["default"]["ndcg_at_10"], abs=1e-5)
        for subset, s in scores["HarnessCLDRBitextMining"]["subsets"].items():
            hits = units[(units.task == "HarnessCLDRBitextMining") & (units.subset == subset)]["value"]
            assert hits.mean() == pytest.approx(s["accuracy"], abs=1e-6)
        log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        assert [e["step"] for e in log] == [1, 2, 3, 4]

    first_base = _deterministic_outputs(results / "tiny" / "base" / "seed-0")

    card = json.loads((results / "tiny" / "cldr-bitext.weight=0" / "seed-0" / "data_card.json").read_text())
    contamination = card["contamination"]["tasks"]
    assert set(contamination) == {"HarnessCodeRetrieval", "HarnessCLDRBitextMining"}
    assert contamination["HarnessCodeRetrieval"]["exact"]["distinct"] <= 1  # disjoint splits, by module
    assert card["sources_with_weight_0"] == ["cldr-bitext"] and card["rows"] == 64
    base_card = json.loads((results / "tiny" / "base" / "seed-0" / "data_card.json").read_text())
    assert base_card["sources"]["stdlib-code"]["rows_kept"] == 32
    assert set(base_card["sources"]["cldr-bitext"]["rows_per_task"]) <= {"cldr-bitext:am", "cldr-bitext:yo", "cldr-bitext:fr"}

    report = (results / "tiny" / "report.md").read_text()
    assert "cldr-bitext.weight=0" in report and ("(+" in report or "(-" in report)
    assert "paired bootstrap" in report and "paired randomisation test" in report and "Holm" in report
    assert "eng-amh" in report and (results / "tiny" / "plots" / "delta_heatmap.png").is_file()
    leaderboard = board.read_text()
    assert "[tiny](" in leaderboard and "report.md)" in leaderboard and "HarnessCodeRetrieval (ndcg_at_10)" in leaderboard
    assert "python -m harness leaderboard" in leaderboard

    # second run: every stage is a cache hit and every output byte is the same
    before = _tree_bytes(results)
    stage_dirs = sorted(p for p in fresh_cache.glob("*/*") if p.is_dir())
    mtimes = [p.stat().st_mtime_ns for p in stage_dirs]
    assert _ablate(recipe, results, board) == 0
    second = capsys.readouterr().out
    assert "trained:" not in second and "built:" not in second and ": ndcg_at_10 =" not in second
    assert second.count("cached") == 2 * 4  # data, train, 2 evals per variant
    assert _tree_bytes(results) == before
    assert [p.stat().st_mtime_ns for p in sorted(p for p in fresh_cache.glob("*/*") if p.is_dir())] == mtimes
    assert board.read_text() == leaderboard

    # regenerating the leaderboard alone is byte-identical too
    assert main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "lb2.md")]) == 0
    assert (tmp_path / "lb2.md").read_text() == leaderboard

    # change one axis value: data stays cached, only train + eval re-run for the changed variant
    write(recipe, TINY.replace("lr: 1.0e-3", "lr: 2.0e-3"))
    assert main(["ablate", str(recipe), "--dry-run", "--no-lengths", "--results", str(results)]) == 0
    dry = capsys.readouterr().out
    assert dry.count("cached: data yes") == 2 and dry.count("train no") == 2
    assert _ablate(recipe, results, board) == 0
    third = capsys.readouterr().out
    assert "built:" not in third and third.count("trained:") == 2

    # same seed, same numbers: base alone (its own recipe) in an empty cache gives the first run's
    # scores, training log and per-unit scores again, though nothing is shared with that run
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache-again"))
    alone = write(tmp_path / "again" / "tiny.yaml", TINY.replace("ablate:\n  data.sources.cldr-bitext.weight: [0.0]\n", ""))
    assert _ablate(alone, tmp_path / "again" / "results", board, "--no-leaderboard", "--no-lengths") == 0
    again = _deterministic_outputs(tmp_path / "again" / "results" / "tiny" / "base" / "seed-0")
    assert again[0] == first_base[0] and again[1] == first_base[1]
    pd.testing.assert_frame_equal(again[2], first_base[2])


def _deterministic_outputs(run: Path) -> tuple[bytes, list[dict[str, float]], pd.DataFrame]:
    """scores.json, the log's deterministic fields (examples/s, tokens/s and memory are wall-clock
    measurements) and units.parquet of one run."""
    log = [{k: e[k] for k in ("step", "loss", "lr", "grad_norm")}
           for e in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())]
    return (run / "scores.json").read_bytes(), log, pd.read_parquet(run / "units.parquet")


def test_dry_run_lists_variants_without_running(tmp_path: Path, fresh_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write(tmp_path / "tiny.yaml", TINY)
    assert main(["ablate", str(recipe), "--dry-run", "--no-lengths", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "base  [seed 0]  hash " in out and "cldr-bitext.weight=0  [seed 0]" in out
    assert "overrides: data.sources.cldr-bitext.weight=0.0" in out
    assert out.count("cached: data no") == 2
    assert not (tmp_path / "r").exists() and not any(fresh_cache.glob("train/*"))


def test_bad_recipe_stops_before_any_work(tmp_path: Path, fresh_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write(tmp_path / "bad.yaml", TINY.replace("steps: 4", "steps: -4"))
    assert _ablate(recipe, tmp_path / "r", tmp_path / "lb.md") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "base.train.steps" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "lb.md").exists() and not fresh_cache.exists()


def test_committed_quickstart_shows_the_mission() -> None:
    """The committed results are the current quickstart recipe's (every variant's hash matches a
    plan of recipes/quickstart.yaml), they cover every task of its benchmark — the offline suite's
    lite cut, one task of every mteb type — and leaderboard.md and the report carry them all."""
    import yaml

    from harness.evaluate.benchmarks import HARNESS_BENCHMARKS
    from harness.recipe import load_recipe

    from .conftest import REPO

    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml")
    assert recipe.base.eval.benchmarks == ["Harness(offline, v1, lite)"]
    expected = set(HARNESS_BENCHMARKS["Harness(offline, v1, lite)"])
    assert len(expected) >= 7  # column matching, bitext, classification, clustering, pairs, reranking, STS
    for variant in recipe.variants:
        committed = yaml.safe_load((REPO / "results" / "quickstart" / variant.name / "config.yaml").read_text())
        assert committed["variant_hash"] == variant.hash, f"{variant.name}: regenerate with the ablate command"
        for seed in recipe.seeds:
            scores = json.loads((REPO / "results" / "quickstart" / variant.name / f"seed-{seed}" / "scores.json")
                                .read_text())
            assert set(scores["tasks"]) == expected
    header = next(line for line in (REPO / "leaderboard.md").read_text().splitlines() if line.startswith("| #"))
    for task in expected:
        assert task in header
    report = (REPO / "results" / "quickstart" / "report.md").read_text()
    assert f" of {len(expected)} tasks" in report  # the across-task test sees every task
