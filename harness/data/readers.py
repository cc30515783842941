"""Table-shaped training sources: parquet files and Hugging Face datasets (Hub id or local folder).

Columns may be FlagEmbedding's (`query`, `pos`, `neg`) or sentence-transformers' (`anchor`,
`positive`, `negative`…); a `task` column, if present, labels rows, else the file / subset does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.data.rows import RowProblems, TrainRow, row_from_record
from harness.errors import HarnessError


def _records(records: Iterable[dict[str, Any]], where: str, task: str, source: str,
             problems: RowProblems) -> list[TrainRow]:
    rows = []
    for index, record in enumerate(records):
        try:
            rows.append(row_from_record(_plain(record), f"{where} row {index}", task, source))
        except HarnessError as exc:
            problems.report(str(exc))
    return rows


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays (parquet list columns) -> lists, so one validator serves every format."""
    return {k: (v.tolist() if hasattr(v, "tolist") and not isinstance(v, str) else v) for k, v in record.items()}


def read_parquet(path: str | Path, source: str = "", problems: RowProblems | None = None) -> list[TrainRow]:
    """A parquet file (one task, named by its stem) or a folder of them (one task per file)."""
    import pandas as pd

    problems = problems or RowProblems()
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet")) if path.is_dir() else []
    if not files:
        raise HarnessError(f"{path}: no parquet file found")
    rows: list[TrainRow] = []
    for file in files:
        try:
            frame = pd.read_parquet(file)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise HarnessError(f"{file}: not a readable parquet file ({exc})") from None
        rows.extend(_records(frame.to_dict(orient="records"), str(file), file.stem, source, problems))
    return rows


def read_hf_dataset(dataset: str, *, subset: str | None = None, split: str = "train", source: str = "",
                    problems: RowProblems | None = None) -> list[TrainRow]:
    """A Hugging Face dataset by Hub id (the real path) or a local folder (`save_to_disk` or data files).

    Task label: the `task` column if present, else the subset, else the dataset name.
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
            data = datasets.load_dataset(dataset, subset, split=split)
    except KeyError:
        raise HarnessError(f"dataset {dataset!r}: no split {split!r}") from None
    except Exception as exc:  # noqa: BLE001 - datasets raises many types when data is unavailable
        raise HarnessError(f"dataset {dataset!r} (subset {subset!r}, split {split!r}) could not be loaded: "
                           f"{type(exc).__name__}: {exc}") from None
    return _records(data, f"{dataset}[{subset or ''}:{split}]", task, source, problems)
