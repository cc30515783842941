"""`python -m harness data build`: only the data stages, each card printed; executor shards merge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.data_build import data_build, parse_shard
from harness.errors import HarnessError

from .conftest import REPO, write


def _recipe(tmp_path: Path, data_extra: dict | None = None, ablate: dict | None = None) -> Path:
    rows = "".join(json.dumps({"query": f"question {i} about topic {i % 7}", "pos": [f"answer {i} on topic {i % 7}"],
                               "neg": [f"unrelated passage {i + 1}", f"unrelated passage {i + 2}"]}) + "\n"
                   for i in range(120))
    write(tmp_path / "train" / "qa.jsonl", rows)
    base = {"model": {"backbone": "tiny-qwen2"},
            "data": {"hard_negatives": 1, "sources": {"qa": {"kind": "flag-jsonl", "path": str(tmp_path / "train")}},
                     **(data_extra or {})}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"description": "data build test", "mode": "oneway", "base": base,
                                    "ablate": ablate or {}}))
    return path


def test_help_and_shard_parsing() -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "data", "build", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert "--variant" in out and "--shard" in out and "torchrun" in out
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(HarnessError, match="--shard"):
            parse_shard(bad)


def test_builds_each_distinct_data_stage_once_and_prints_its_card(tmp_path: Path, fresh_cache: Path) -> None:
    recipe = _recipe(tmp_path, ablate={"data.sources.qa.max_rows": [50], "train.lr": [1e-3]})
    lines: list[str] = []
    first = data_build(recipe, show_progress=False, log=lines.append)
    # base and the lr variant share one data stage; max_rows=50 is another
    assert [r["built"] for r in first] == [True, True] and len({r["data"] for r in first}) == 2
    assert sorted(r["card"]["rows"] for r in first) == [50, 120]
    text = "\n".join(lines)
    assert "(built)" in text and "source qa (flag-jsonl, weight 1.0): 120 available" in text
    again: list[str] = []
    data_build(recipe, variant="qa.max_rows=50", show_progress=False, log=again.append)
    assert "(cached)" in again[0] and "\n  rows 50," in again[0]
    with pytest.raises(HarnessError, match="no variant 'nope'"):
        data_build(recipe, variant="nope", log=lines.append)


@pytest.mark.slow
def test_executor_shards_then_one_plain_run_merges(tmp_path: Path, fresh_cache: Path) -> None:
    """Two `--shard I/2` jobs encode the teacher pass; the plain run reuses their vectors."""
    recipe = _recipe(tmp_path, {"filter": {"teacher": "tiny-qwen2", "top_k": 10, "window": [2, 8], "depth": 16,
                                           "max_length": 32}})
    logs: list[str] = []
    for shard in ((0, 2), (1, 2)):
        out = data_build(recipe, shard=shard, show_progress=False, log=logs.append)
        assert out[0]["shard"] == list(shard)
    assert "waiting for other shards" in logs[0] and "all shards done" in logs[1]
    assert not (fresh_cache / "data").exists()  # shards build no data stage
    card = data_build(recipe, show_progress=False, log=logs.append)[0]["card"]
    assert card["filter"]["teacher"]["teacher_pass"] == "miss"
    ranking = next((fresh_cache / "rankings").iterdir())
    stats = json.loads((ranking / "ranking.json").read_text())["stats"]
    assert stats["shards"] == 2 and stats["texts_encoded"] == 0  # merged from the shards' files
    assert card["rows_after_filter"] <= card["rows"] == 120
