"""`leaderboard` and `report` skip (and list, with the reason) result files they cannot read,
and never crash on duplicates — checked on copies of the committed quickstart results."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from harness.cli import main

from .conftest import REPO, write

KEEP = ("base", "hard_negatives=0")
ARM = KEEP[1]


def _results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for variant in KEEP:
        shutil.copytree(REPO / "results" / "quickstart" / variant, root / "quickstart" / variant)
    shutil.copytree(REPO / "results" / "baselines", root / "baselines")
    return root


def _board_rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("| ") and "recipe" not in line]


def test_leaderboard_skips_and_lists_what_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _results(tmp_path)
    assert main(["leaderboard", "--results", str(root), "--out", str(tmp_path / "clean.md")]) == 0
    clean = _board_rows(tmp_path / "clean.md")
    capsys.readouterr()

    quick = root / "quickstart"
    shutil.copytree(quick / "base" / "seed-0", quick / "base" / "seed-x")  # not a seed number
    shutil.copytree(root / "baselines" / "minilm", root / "baselines" / "minilm-old")
    write(root / "baselines" / "minilm-old" / "seed-0" / "scores.json", "{not json")
    write(root / "baselines" / "random-encoder" / "seed-0" / "scores.json",
          '{"tasks": {"HarnessCodeRetrieval": {"type": "Retrieval", "main_metric": "ndcg_at_10", "main_score": "high"}}}')
    shutil.copytree(quick, root / "backup" / "quickstart")  # a copy nested one level too deep
    write(quick / "significance.json", "[1, 2")
    (root / "stray").mkdir()
    (root / "stray" / "scores.json").write_bytes(b"\xff\xfe")  # not a run folder at all: ignored

    out = tmp_path / "lb.md"
    assert main(["leaderboard", "--results", str(root), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    expected = [
        f"{root / 'backup'}: 2 run folder(s) nested below <recipe>/<variant>/seed-N/ (a copy of results?); "
        "move them to their own results root to compare them",
        f"{root / 'baselines' / 'minilm-old' / 'seed-0' / 'scores.json'}: not valid JSON (Expecting property name "
        "enclosed in double quotes at line 1, column 2)",
        f"{root / 'baselines' / 'random-encoder' / 'seed-0' / 'scores.json'}: task 'HarnessCodeRetrieval': "
        "`main_score` is not a finite number ('high')",
        f"{quick / 'base' / 'seed-x'}: folder name is not seed-<integer>",
        f"{quick / 'significance.json'}: not valid JSON (Expecting ',' delimiter at line 1, column 6); "
        "this recipe's rows carry no marks",
    ]
    assert sorted(captured.err.splitlines()) == sorted(f"leaderboard: skipped {e}" for e in expected)
    text = out.read_text()
    listed = text.split("## Skipped result files")[1]
    for entry in expected:
        path, reason = entry.split(": ", 1)
        assert f"- `{Path(path).relative_to(root)}`: {reason}" in listed
    rows = _board_rows(out)
    # every readable run is still there with the same numbers; the random encoder's row is gone and the
    # quickstart rows lost only their significance marks (their significance.json is broken)
    unmarked = [row.replace("*", "") for row in clean if "random-encoder" not in row]
    assert sorted(rows) == sorted(unmarked)


def test_report_survives_broken_files_and_stale_duplicates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _results(tmp_path)
    quick = root / "quickstart"
    stale = "hard_negatives=0.0"
    shutil.copytree(quick / ARM, quick / stale)  # same config, stale name
    (quick / "base" / "seed-0" / "units.parquet").write_bytes(b"PAR1 truncated")
    shutil.copytree(quick / stale / "seed-0", quick / stale / "seed-1")
    write(quick / stale / "seed-1" / "scores.json", "")
    shutil.copytree(quick / "base" / "seed-0", quick / "base" / "seed-x")
    arm_hash = yaml.safe_load((quick / ARM / "config.yaml").read_text())["variant_hash"]

    assert main(["report", str(quick)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.splitlines() == [
        f"report: skipped {quick / 'base' / 'seed-x'}: folder name is not seed-<integer>",
        f"report: skipped {quick / stale / 'seed-1' / 'scores.json'}: not valid JSON "
        "(Expecting value at line 1, column 1)",
        f"report: skipped {quick / 'base' / 'seed-0' / 'units.parquet'}: not a readable parquet file (ArrowInvalid)",
        f"report: warning: variants '{ARM}', '{stale}' have the same config (variant "
        f"hash {arm_hash}); all but one are probably left over from an earlier version of the recipe",
    ]
    report = (quick / "report.md").read_text()
    assert "## Warnings" in report and "## Skipped result files" in report
    assert "- `base/seed-0/units.parquet`: not a readable parquet file (ArrowInvalid)" in report
    # both copies keep their own point in the axis plot instead of breaking it
    assert (quick / "plots" / "axis_data.hard_negatives.png").is_file()
    assert f"| {stale} " in report
