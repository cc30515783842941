"""Table-shaped training sources: parquet files and Hugging Face datasets (Hub id or local folder).

Columns may be FlagEmbedding's (`query`, `pos`, `neg`) or sentence-transformers' (`anchor`,
`positive`, `negative`…); a `task` column, if present, labels rows, else the file / subset does.
Both readers stream: parquet one record batch at a time (pyarrow), a dataset row by row from
its memory-mapped Arrow files, so a source never has to fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.data.rows import RowProblems, TrainRow, row_from_record
from harness.errors import HarnessError

PARQUET_BATCH_ROWS = 4096


def _records(records: Iterable[dict[str, Any]], where: str, task: str, source: str,
             problems: RowProblems, first: int = 0) -> Iterator[TrainRow]:
    for index, record in enumerate(records, start=first):
        try:
            yield row_from_record(_plain(record), f"{where} row {index}", task, source)
        except HarnessError as exc:
            problems.report(str(exc))


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays (list columns) -> lists, so one validator serves every format."""
    return {k: (v.tolist() if hasattr(v, "tolist") and not isinstance(v, str) else v) for k, v in record.items()}


def iter_parquet(path: str | Path, source: str = "", problems: RowProblems | None = None) -> Iterator[TrainRow]:
    """A parquet file (one task, named by its stem) or a folder of them (one task per file), streamed."""
    import pyarrow.parquet as pq

    problems = problems or RowProblems()
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet")) if path.is_dir() else []
    if not files:
        raise HarnessError(f"{path}: no parquet file found")
    for file in files:
        try:
            batches = pq.ParquetFile(file).iter_batches(batch_size=PARQUET_BATCH_ROWS)
            first = 0
            for batch in batches:
                yield from _records(batch.to_pylist(), str(file), file.stem, source, problems, first)
                first += batch.num_rows
        except HarnessError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise HarnessError(f"{file}: not a readable parquet file ({exc})") from None


def read_parquet(path: str | Path, source: str = "", problems: RowProblems | None = None) -> list[TrainRow]:
    return list(iter_parquet(path, source, problems))


def iter_hf_dataset(dataset: str, *, subset: str | None = None, split: str = "train", source: str = "",
                    problems: RowProblems | None = None, revision: str | None = None) -> Iterator[TrainRow]:
    """A Hugging Face dataset by Hub id (the real path) or a local folder (`save_to_disk` or data files).

    Task label: the `task` column if present, else the subset, else the dataset name. The rows are
    read from the dataset's memory-mapped Arrow cache, a batch at a time. `revision` (a Hub commit,
    branch or tag) pins what is read from the Hub.
    """
    import datasets

    problems = problems or RowProblems()
    local = Path(dataset).expanduser()
    task = subset or (local.name if local.exists() else dataset.split("/")[-1])
    try:
        saved = local.is_dir() and any((local / f).is_file() for f in ("dataset_dict.json", "dataset_info.json"))
        if saved:
            loaded = datasets.load_from_disk(str(local))
            data = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            data = datasets.load_dataset(dataset, subset, split=split, revision=revision)
    except KeyError:
        raise HarnessError(f"dataset {dataset!r}: no split {split!r}") from None
    except Exception as exc:  # noqa: BLE001 - datasets raises many types when data is unavailable
        raise HarnessError(f"dataset {dataset!r} (subset {subset!r}, split {split!r}) could not be loaded: "
                           f"{type(exc).__name__}: {exc}") from None
    where = f"{dataset}[{subset or ''}:{split}]"
    first = 0
    for batch in data.with_format("arrow").iter(batch_size=PARQUET_BATCH_ROWS):
        yield from _records(batch.to_pylist(), where, task, source, problems, first)
        first += batch.num_rows


def read_hf_dataset(dataset: str, *, subset: str | None = None, split: str = "train", source: str = "",
                    problems: RowProblems | None = None) -> list[TrainRow]:
    return list(iter_hf_dataset(dataset, subset=subset, split=split, source=source, problems=problems))
