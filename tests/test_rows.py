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


def test_parquet_and_local_hf_dataset_in_sentence_transformers_columns(tmp_path: Path) -> None:
    import datasets
    import pandas as pd

    from harness.data.readers import read_hf_dataset, read_parquet

    frame = pd.DataFrame({"anchor": ["q1", "q2"], "positive": ["p1", "p2"], "negative_1": ["n1", "m1"],
                          "negative_2": ["n2", "m2"]})
    frame.to_parquet(tmp_path / "pairs.parquet")
    rows = read_parquet(tmp_path / "pairs.parquet", source="pq")
    assert [(r.task, r.query, r.pos, r.neg) for r in rows] == [
        ("pairs", "q1", ["p1"], ["n1", "n2"]), ("pairs", "q2", ["p2"], ["m1", "m2"])]

    flag = datasets.Dataset.from_dict({"query": ["a", "b"], "pos": [["pa"], ["pb"]], "neg": [["na"], []]})
    datasets.DatasetDict({"train": flag}).save_to_disk(str(tmp_path / "saved"))
    rows = read_hf_dataset(str(tmp_path / "saved"), split="train", source="hf")
    assert [(r.task, r.query, r.pos, r.neg) for r in rows] == [("saved", "a", ["pa"], ["na"]), ("saved", "b", ["pb"], [])]
    with pytest.raises(HarnessError, match="no split 'validation'"):
        read_hf_dataset(str(tmp_path / "saved"), split="validation")


def test_hub_dataset_offline_fails_at_once_with_a_clear_message() -> None:
    from harness.data.readers import read_hf_dataset

    with pytest.raises(HarnessError, match="could not be loaded"):  # how fast: bench/bench_fail_fast.py
        read_hf_dataset("KaLM-Embedding/KaLM-embedding-finetuning-data")


def test_skip_mode_counts_malformed_rows(tmp_path: Path) -> None:
    from harness.data.rows import RowProblems

    path = write(tmp_path / "t.jsonl", _jsonl({"query": "ok", "pos": ["fine"]}) + "{broken\n" + _jsonl({"pos": ["x"]}))
    problems = RowProblems("skip")
    rows = read_flag_jsonl(path, problems=problems)
    assert len(rows) == 1 and problems.count == 2
    assert f"{path}:2:" in problems.examples[0] and f"{path}:3:" in problems.examples[1]
