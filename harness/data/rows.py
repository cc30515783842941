"""Training rows and the FlagEmbedding JSON-lines format (`{"query", "pos": [...], "neg": [...]}`).

One file, or one folder, is one *task*: the unit the semi-homogeneous sampler and the
ranking-consistency filter work on. Malformed rows stop the run with file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


@dataclass
class TrainRow:
    query: str
    pos: list[str]
    neg: list[str] = field(default_factory=list)
    task: str = "default"
    instruction: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        # == dataclasses.asdict(self), without its deep copy (the hot path of the data stage's card)
        return {"query": self.query, "pos": list(self.pos), "neg": list(self.neg), "task": self.task,
                "instruction": self.instruction, "source": self.source}


class RowProblems:
    """Malformed rows: raise at the first one (`fail`), or count them for the data card (`skip`)."""

    def __init__(self, on_error: str = "fail") -> None:
        self.on_error = on_error
        self.count = 0
        self.examples: list[str] = []

    def report(self, message: str) -> None:
        if self.on_error != "skip":
            raise HarnessError(message)
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(message)

    def card(self) -> dict[str, Any]:
        return {"malformed_rows_skipped": self.count, "malformed_examples": self.examples}


def _texts(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def row_from_record(obj: Any, where: str, task: str, source: str) -> TrainRow:
    """One training row from a FlagEmbedding record (`query`, `pos`, `neg`) or a
    sentence-transformers one (`anchor`, `positive`, `negative` / `negative_1`…)."""
    if not isinstance(obj, dict):
        raise HarnessError(f"{where}: a row must be a JSON object, got {type(obj).__name__}")
    query = obj.get("query", obj.get("anchor"))
    if not isinstance(query, str) or not query.strip():
        raise HarnessError(f"{where}: missing or empty 'query' (a non-empty string)")
    pos = _texts(obj.get("pos", obj.get("positive")))
    if not pos or not all(p.strip() for p in pos):
        raise HarnessError(f"{where}: 'pos' must be a non-empty list of non-empty strings")
    if "neg" in obj:
        neg = _texts(obj["neg"]) if obj["neg"] is not None else []
        if neg is None or isinstance(obj["neg"], str):
            raise HarnessError(f"{where}: 'neg' must be a list of strings")
    else:
        keys = sorted((k for k in obj if k == "negative" or k.startswith("negative_")),
                      key=lambda k: (len(k), k))
        neg = [t for k in keys for t in (_texts(obj[k]) or [])]
    both = [text for text in neg if text in set(pos)]
    if both:
        raise HarnessError(f"{where}: {_short(both[0])!r} is both in 'pos' and 'neg' (a text cannot be relevant and "
                           "a negative for the same query)")
    instruction = obj.get("instruction", obj.get("prompt"))
    if instruction is not None and not isinstance(instruction, str):
        raise HarnessError(f"{where}: 'instruction' must be a string")
    return TrainRow(query=query, pos=pos, neg=neg, task=str(obj.get("task") or task),
                    instruction=instruction or None, source=source)


def _read_file(path: Path, task: str, source: str, problems: RowProblems) -> Iterator[TrainRow]:
    with path.open("rb") as handle:  # bytes, so one non-UTF-8 line is a row problem, not a crash
        for line_no, raw in enumerate(handle, start=1):
            where = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.report(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                yield row_from_record(json.loads(line), where, task, source)
            except json.JSONDecodeError as exc:
                problems.report(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
            except HarnessError as exc:
                problems.report(str(exc))


def iter_flag_jsonl(path: str | Path, source: str = "", problems: RowProblems | None = None) -> Iterator[TrainRow]:
    """Stream a FlagEmbedding-style file (one task, named by its stem) or folder, row by row.

    In a folder, each `*.jsonl` file is a task named by its stem and each sub-folder is a task
    named by the folder, made of all `*.jsonl` files inside it. Memory: one line at a time.
    """
    problems = problems or RowProblems()
    path = Path(path)
    if path.is_file():
        yield from _read_file(path, path.stem, source, problems)
        return
    if not path.is_dir():
        raise HarnessError(f"{path}: no such file or folder (FlagEmbedding JSON lines expected)")
    found = 0
    for child in sorted(path.iterdir()):
        if child.is_file() and child.suffix == ".jsonl":
            files = [(child, child.stem)]
        elif child.is_dir():
            files = [(file, child.name) for file in sorted(child.rglob("*.jsonl"))]
        else:
            continue
        for file, task in files:
            for row in _read_file(file, task, source, problems):
                found += 1
                yield row
    if not found and not problems.count:
        raise HarnessError(f"{path}: no rows found (expected *.jsonl files or task sub-folders)")


def read_flag_jsonl(path: str | Path, source: str = "", problems: RowProblems | None = None) -> list[TrainRow]:
    """All rows of `iter_flag_jsonl` as a list (small sources and tests)."""
    return list(iter_flag_jsonl(path, source, problems))


def write_jsonl_text(rows: Iterable[TrainRow]) -> str:
    return "".join(json.dumps(r.to_json(), ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def load_rows(path: str | Path) -> list[TrainRow]:
    """Read back a training table written by the data stage."""
    with Path(path).open(encoding="utf-8") as handle:
        return [TrainRow(**json.loads(line)) for line in handle if line.strip()]
