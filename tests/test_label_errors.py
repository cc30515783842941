"""Bad labels (issue 20): a task folder or training source whose labels are missing or inconsistent
stops with one error naming the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import SourceConfig
from harness.data.mix import read_source
from harness.data.offline.table_folder import load_table_task
from harness.errors import HarnessError

from .conftest import write


def _people_task(root: Path, matches: str, candidates: str | None = None) -> Path:
    write(root / "task.yaml", "name: People\nkind: tuple\n")
    write(root / "tables" / "people.csv", "name,city\nAnn Lee,Oslo\nann lee,oslo\nBo Ek,Lund\n")
    write(root / "queries.csv", "query_id,table,row\nq0,people.csv,0\nq2,people.csv,2\n")
    if candidates is not None:
        write(root / "candidates.csv", candidates)
    write(root / "matches.csv", matches)
    return root


def test_a_query_without_any_match_is_named_where_it_is_defined(tmp_path: Path) -> None:
    root = _people_task(tmp_path / "t", "query_id,candidate_id\nq0,people.csv:1\n")
    with pytest.raises(HarnessError) as info:
        load_table_task(root)
    message = str(info.value)
    assert message.startswith(f"{root / 'queries.csv'}:3: query_id 'q2' has no row in {root / 'matches.csv'}")


def test_a_query_matched_to_itself_is_inconsistent(tmp_path: Path) -> None:
    candidates = "candidate_id,table,row\nc0,people.csv,0\nc1,people.csv,1\n"
    root = _people_task(tmp_path / "t", "query_id,candidate_id\nq0,c1\nq2,c0\nq0,c0\n", candidates)
    with pytest.raises(HarnessError, match=r"matches\.csv:4: query 'q0' is matched to candidate 'c0', which is the "
                                           r"same tuple \(people\.csv: 0\)"):
        load_table_task(root)
    fixed = _people_task(tmp_path / "ok", "query_id,candidate_id\nq0,c1\nq2,c0\n", candidates)
    assert load_table_task(fixed).qrels == {"q0": {"c1": 1}, "q2": {"c0": 1}}


@pytest.mark.parametrize(("record", "expected"), [
    ({"query": "a docstring", "neg": ["other"]}, "'pos' must be a non-empty list"),  # label missing
    ({"query": "a docstring", "pos": ["body"], "neg": ["x", "body"]},
     "'body' is both in 'pos' and 'neg'"),  # labels contradict each other
])
def test_a_flag_jsonl_source_with_a_bad_label_stops_at_its_line(tmp_path: Path, record: dict, expected: str) -> None:
    good = json.dumps({"query": "q", "pos": ["p"]})
    path = write(tmp_path / "mine" / "code.jsonl", f"{good}\n\n{good}\n{json.dumps(record)}\n{good}\n")
    source = SourceConfig(kind="flag-jsonl", path=str(path.parent))
    with pytest.raises(HarnessError) as info:
        read_source("mine", source)
    assert str(info.value).startswith(f"{path}:4: ") and expected in str(info.value)
    skipping = SourceConfig(kind="flag-jsonl", path=str(path.parent), on_error="skip")
    assert len(read_source("mine", skipping)) == 3  # `on_error: skip` drops (and counts) only that line
