"""The on-disk table-matching task format (docs/table-matching.md): task.yaml, tables/, queries.csv,
[candidates.csv], matches.csv. Any corpus with ground truth (CIUS, SAUS, CovidKG, CancerKG,
Webtable, ...) becomes a task without a code change; every format error names the file and line.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.data.offline.table_matching import (
    DEFAULT_INSTRUCTIONS,
    DEFAULT_MAX_VALUE_CHARS,
    DEFAULT_SAMPLE_VALUES,
    Kind,
    TableMatchingData,
    serialise_column,
    serialise_row,
)
from harness.errors import HarnessError, not_utf8
from harness.paths import name_problem

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


def read_options(path: Path) -> Any:
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
    line: int = 0  # where it is defined (queries.csv / candidates.csv); 0 = a default candidate


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
        item = _Item(values[id_column], values["table"], values[ref_column], line=line)
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
    options = read_options(folder / "task.yaml")
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
        query, candidate = queries[qid], candidates[cid]
        if (query.table, query.ref) == (candidate.table, candidate.ref):
            raise HarnessError(f"{where}: query {qid!r} is matched to candidate {cid!r}, which is the same {kind} "
                               f"({query.table}: {query.ref}); a query cannot be its own match")
        qrels.setdefault(qid, {})[cid] = int(relevance)
    unmatched = [query for qid, query in queries.items() if qid not in qrels]
    if unmatched:
        more = f" (and {len(unmatched) - 1} more)" if len(unmatched) > 1 else ""
        raise HarnessError(f"{folder / 'queries.csv'}:{unmatched[0].line}: query_id {unmatched[0].id!r} has no row in "
                           f"{matches.path}{more}; every query needs at least one match")
    return TableMatchingData(
        name=options.name, kind=kind,
        queries=[(q.id, q.text) for q in queries.values()],
        corpus=[(c.id, c.text) for c in candidates.values()],
        qrels=qrels, instruction=options.instruction or DEFAULT_INSTRUCTIONS[kind],
        description=options.description or f"{kind} matching task loaded from {folder.name}",
    )
