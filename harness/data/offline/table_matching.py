"""Table matching as retrieval: the data type every table source produces, and the one way a table
column or row becomes text (shared by the user folder format, FEBRL and the Valentine-style tasks).

A query is a table column (header + a few sampled values) or a table row, the corpus is the
candidate columns or rows, and the ground truth says which candidates match. Sources:
`table_folder.load_table_task` (a user's corpus, docs/table-matching.md), `febrl.febrl_tuple_matching`
and `valentine.valentine_column_matching`. Samples and noise come from seeds hashed from names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness.data.rows import TrainRow
from harness.errors import HarnessError
from harness.hashing import content_hash

Kind = Literal["column", "tuple"]
Split = Literal["train", "test"]

COLUMN_MATCHING = ("Given a table column (its header and sample values), retrieve the columns of other "
                   "tables that hold the same attribute.")
TUPLE_MATCHING = "Given a table record, retrieve the records that describe the same real-world entity."
DEFAULT_INSTRUCTIONS: dict[str, str] = {"column": COLUMN_MATCHING, "tuple": TUPLE_MATCHING}

DEFAULT_SAMPLE_VALUES = 5
DEFAULT_MAX_VALUE_CHARS = 100


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


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from names, the same in every process (unlike `hash`)."""
    return int(hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16], 16)


def check_split(split: str, what: str) -> None:
    if split not in ("train", "test"):
        raise HarnessError(f"{what}: unknown split {split!r}; allowed: 'train', 'test'")


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
        picked = np.random.default_rng(stable_seed("column", seed)).choice(len(distinct), sample_values, replace=False)
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
