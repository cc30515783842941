"""Training rows and the FlagEmbedding JSON-lines format (`{"query", "pos": [...], "neg": [...]}`).

One file, or one folder, is one *task*: the unit the semi-homogeneous sampler and the
ranking-consistency filter work on. Malformed rows stop the run with file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
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
        return asdict(self)


def _row_from_json(obj: Any, where: str, task: str, source: str) -> TrainRow:
    if not isinstance(obj, dict):
        raise HarnessError(f"{where}: a row must be a JSON object, got {type(obj).__name__}")
    query = obj.get("query")
    if not isinstance(query, str) or not query.strip():
        raise HarnessError(f"{where}: missing or empty 'query' (a non-empty string)")
    pos = obj.get("pos")
    if not isinstance(pos, list) or not pos or not all(isinstance(p, str) and p.strip() for p in pos):
        raise HarnessError(f"{where}: 'pos' must be a non-empty list of non-empty strings")
    neg = obj.get("neg", [])
    if not isinstance(neg, list) or not all(isinstance(n, str) for n in neg):
        raise HarnessError(f"{where}: 'neg' must be a list of strings")
    instruction = obj.get("instruction", obj.get("prompt"))
    if instruction is not None and not isinstance(instruction, str):
        raise HarnessError(f"{where}: 'instruction' must be a string")
    return TrainRow(query=query, pos=list(pos), neg=list(neg), task=task, instruction=instruction or None,
                    source=source)


def _read_file(path: Path, task: str, source: str) -> Iterator[TrainRow]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            yield _row_from_json(obj, where, task, source)


def read_flag_jsonl(path: str | Path, source: str = "") -> list[TrainRow]:
    """Read a FlagEmbedding-style file (one task, named by its stem) or folder.

    In a folder, each `*.jsonl` file is a task named by its stem and each sub-folder is a task
    named by the folder, made of all `*.jsonl` files inside it.
    """
    path = Path(path)
    if path.is_file():
        return list(_read_file(path, path.stem, source))
    if not path.is_dir():
        raise HarnessError(f"{path}: no such file or folder (FlagEmbedding JSON lines expected)")
    rows: list[TrainRow] = []
    for child in sorted(path.iterdir()):
        if child.is_file() and child.suffix == ".jsonl":
            rows.extend(_read_file(child, child.stem, source))
        elif child.is_dir():
            for file in sorted(child.rglob("*.jsonl")):
                rows.extend(_read_file(file, child.name, source))
    if not rows:
        raise HarnessError(f"{path}: no rows found (expected *.jsonl files or task sub-folders)")
    return rows


def write_jsonl_text(rows: Iterable[TrainRow]) -> str:
    return "".join(json.dumps(r.to_json(), ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def load_rows(path: str | Path) -> list[TrainRow]:
    """Read back a training table written by the data stage."""
    with Path(path).open(encoding="utf-8") as handle:
        return [TrainRow(**json.loads(line)) for line in handle if line.strip()]
