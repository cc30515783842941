"""FlagEmbedding JSON-lines reader: tasks from files and folders, errors with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data.rows import read_flag_jsonl
from harness.errors import HarnessError

from .conftest import write


def _jsonl(*rows: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_file_is_one_task_folder_holds_many(tmp_path: Path) -> None:
    write(tmp_path / "mix" / "msmarco.jsonl", _jsonl({"query": "q1", "pos": ["p1"], "neg": ["n1", "n2"]}))
    write(tmp_path / "mix" / "nq" / "part-0.jsonl", _jsonl({"query": "q2", "pos": ["p2"]}))
    write(tmp_path / "mix" / "nq" / "part-1.jsonl", "\n" + _jsonl({"query": "q3", "pos": ["p3"], "instruction": "Find"}))
    rows = read_flag_jsonl(tmp_path / "mix", source="mine")
    assert [(r.task, r.query) for r in rows] == [("msmarco", "q1"), ("nq", "q2"), ("nq", "q3")]
    assert rows[0].neg == ["n1", "n2"] and rows[1].neg == []
    assert rows[2].instruction == "Find" and rows[0].source == "mine"
    single = read_flag_jsonl(tmp_path / "mix" / "msmarco.jsonl")
    assert len(single) == 1 and single[0].task == "msmarco"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"query": "q", "pos": ["p"]', "invalid JSON"),
        ('{"pos": ["p"]}', "missing or empty 'query'"),
        ('{"query": "q", "pos": []}', "'pos' must be a non-empty list"),
        ('{"query": "q", "pos": ["p"], "neg": "n"}', "'neg' must be a list"),
        ('["q", "p"]', "must be a JSON object"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path / "t.jsonl", _jsonl({"query": "ok", "pos": ["fine"]}) + line + "\n")
    with pytest.raises(HarnessError) as info:
        read_flag_jsonl(path)
    assert f"{path}:2:" in str(info.value) and expected in str(info.value)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no such file or folder"):
        read_flag_jsonl(tmp_path / "absent")
