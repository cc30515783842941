"""The training table on disk: an Arrow IPC file, written in record batches, read memory-mapped.

Why Arrow IPC (the format Hugging Face `datasets` memory-maps) and not parquet or JSON lines:
an uncompressed IPC file is read zero-copy through `pa.memory_map`, so opening a table of any
size costs nothing and `table[i]` touches only the pages of row `i`. A training rank therefore
holds the task column (for the sampler) and the rows of its own batches, never the whole table;
parquet would have to decompress whole row groups, JSON lines would have to be parsed in full.

Columns: query (str), pos (list<str>), neg (list<str>), task (str), instruction (str | null),
source (str) — exactly the fields of `TrainRow`, which is what `table[i]` returns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self, overload

import numpy as np
import pyarrow as pa

from harness.data.rows import TrainRow
from harness.errors import HarnessError

TABLE_FILE = "rows.arrow"
BATCH_ROWS = 4096  # rows per record batch: the unit of writing and of streaming reads
COLUMNS = ("query", "pos", "neg", "task", "instruction", "source")
SCHEMA = pa.schema([
    ("query", pa.string()),
    ("pos", pa.list_(pa.string())),
    ("neg", pa.list_(pa.string())),
    ("task", pa.string()),
    ("instruction", pa.string()),
    ("source", pa.string()),
])


class TableWriter:
    """Append `TrainRow`s; they reach disk one record batch at a time (memory: one batch)."""

    def __init__(self, path: str | os.PathLike[str], batch_rows: int = BATCH_ROWS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.batch_rows = batch_rows
        self.rows = 0
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_file(self._sink, SCHEMA)
        self._buffer: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def add(self, row: TrainRow) -> None:
        buffer = self._buffer
        buffer["query"].append(row.query)
        buffer["pos"].append(row.pos)
        buffer["neg"].append(row.neg)
        buffer["task"].append(row.task)
        buffer["instruction"].append(row.instruction)
        buffer["source"].append(row.source)
        self.rows += 1
        if len(buffer["query"]) >= self.batch_rows:
            self._flush()

    def extend(self, rows: Iterable[TrainRow]) -> None:
        for row in rows:
            self.add(row)

    def _flush(self) -> None:
        if self._buffer["query"]:
            self._writer.write_batch(pa.record_batch(self._buffer, schema=SCHEMA))
            self._buffer = {c: [] for c in COLUMNS}

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._sink.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # leave no half-written table behind
            self._sink.close()
            self.path.unlink(missing_ok=True)


def write_table(path: str | os.PathLike[str], rows: Iterable[TrainRow]) -> int:
    """Write `rows` as a table file; returns the row count."""
    with TableWriter(path) as writer:
        writer.extend(rows)
    return writer.rows


def _row(batch: pa.RecordBatch, j: int) -> TrainRow:
    query, pos, neg, task, instruction, source = (batch.column(k)[j].as_py() for k in range(6))
    return TrainRow(query=query, pos=pos, neg=neg or [], task=task, instruction=instruction, source=source)


def _batch_rows(batch: pa.RecordBatch) -> list[TrainRow]:
    cols = [batch.column(k).to_pylist() for k in range(6)]
    return [TrainRow(query=q, pos=p, neg=n or [], task=t, instruction=i, source=s)
            for q, p, n, t, i, s in zip(*cols, strict=True)]


class RowTable(Sequence[TrainRow]):
    """A memory-mapped training table that reads like `list[TrainRow]`.

    `len(table)`, `table[i]` (one row, read on demand through the memory map), iteration (streamed
    batch by batch, read and dropped) and `task_codes()` (the sampler's input: one int per row,
    nothing else) are all a training loop or a filter needs; nothing is loaded until asked for.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise HarnessError(f"{self.path}: no training table (run the data stage first)")
        try:
            self._reader = pa.ipc.open_file(pa.memory_map(str(self.path), "r"))
        except (pa.ArrowInvalid, OSError) as exc:
            raise HarnessError(f"{self.path}: not a readable training table ({exc})") from None
        if not self._reader.schema.equals(SCHEMA):
            raise HarnessError(f"{self.path}: unexpected table columns {self._reader.schema.names}; "
                               f"expected {list(COLUMNS)}")
        self._batches = [self._reader.get_batch(i) for i in range(self._reader.num_record_batches)]
        self._starts = np.cumsum([0] + [b.num_rows for b in self._batches])
        self._task_codes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    @overload
    def __getitem__(self, index: int) -> TrainRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[TrainRow]: ...

    def __getitem__(self, index: int | slice) -> TrainRow | list[TrainRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"row {index} out of range for a table of {len(self)} rows")
        b = int(np.searchsorted(self._starts, i, side="right")) - 1
        return _row(self._batches[b], i - int(self._starts[b]))

    def _stream(self) -> Iterator[pa.RecordBatch]:
        """Record batches read one at a time into memory and dropped: a full pass must not leave
        the whole file mapped into this process (mapped pages count as its resident memory)."""
        with pa.OSFile(str(self.path), "rb") as handle:
            reader = pa.ipc.open_file(handle)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)

    def __iter__(self) -> Iterator[TrainRow]:
        for batch in self._stream():
            yield from _batch_rows(batch)

    def iter_batches(self) -> Iterator[list[TrainRow]]:
        """Rows one record batch at a time (the streaming readers' unit)."""
        for batch in self._stream():
            yield _batch_rows(batch)

    def take(self, positions: np.ndarray) -> list[TrainRow]:
        """The rows at ascending `positions`, read through a memory map of their own that is closed on
        return: the pages they touched leave this process's resident memory with it (the teacher pass
        and the cut read one task at a time this way)."""
        positions = np.asarray(positions, dtype=np.int64)
        out: list[TrainRow] = []
        with pa.memory_map(str(self.path), "r") as source:
            reader = pa.ipc.open_file(source)
            which = np.searchsorted(self._starts, positions, side="right") - 1
            for b in np.unique(which).tolist():
                local = positions[which == b] - int(self._starts[b])
                out.extend(_batch_rows(reader.get_batch(b).take(pa.array(local))))
        return out

    def text_count(self) -> int:
        """Queries + positives + negatives, with repeats, from the list offsets alone (no text read)."""
        total = 0
        for batch in self._batches:
            total += batch.num_rows
            for k in (1, 2):
                offsets = batch.column(k).offsets
                total += offsets[-1].as_py() - offsets[0].as_py() if len(offsets) else 0
        return total

    def column(self, name: str) -> Iterator[Any]:
        """One column's values, streamed batch by batch."""
        k = COLUMNS.index(name)
        for batch in self._stream():
            yield from batch.column(k).to_pylist()

    def task_codes(self) -> np.ndarray:
        """int32 code per row, codes numbered by the task's first appearance: the sampler's input.

        Equal codes <=> equal task labels, so any grouping by task is the same as on the labels.
        """
        if self._task_codes is None:
            codes: dict[str, int] = {}
            parts = []
            for batch in self._batches:
                encoded = batch.column(3).dictionary_encode()
                names = encoded.dictionary.to_pylist()
                mapping = np.asarray([codes.setdefault(n, len(codes)) for n in names], dtype=np.int32)
                parts.append(mapping[encoded.indices.to_numpy(zero_copy_only=False)])
            self._task_codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
            self._task_names = list(codes)
        return self._task_codes

    def task_names(self) -> list[str]:
        """Task labels in code order (`task_names()[code]`)."""
        self.task_codes()
        return list(self._task_names)


def open_table(stage_dir: str | os.PathLike[str]) -> RowTable:
    """The training table of a finished data stage folder."""
    return RowTable(Path(stage_dir) / TABLE_FILE)


def task_labels(rows: Sequence[TrainRow]) -> Sequence[Any]:
    """The sampler's input for a table (int codes, cheap) or a plain list of rows (labels)."""
    if isinstance(rows, RowTable):
        return rows.task_codes()
    return [row.task for row in rows]
