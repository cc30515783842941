"""Atomic writes: every artifact is written to a temp path in the same folder, then renamed.

A crash therefore leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Canonical, human-readable JSON (sorted keys, trailing newline) so files diff cleanly."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, dumps_json(obj))


def write_parquet(path: str | os.PathLike[str], frame: Any) -> Path:
    """Write a pandas DataFrame as parquet, atomically like every other file."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return write_bytes(path, buffer.getvalue())


def remove_stale_staging(final: str | os.PathLike[str]) -> None:
    """Delete temp folders a killed `staged_dir(final)` left behind (one writer per artifact)."""
    final = Path(final)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp folder next to `final`; on success it is renamed to `final`.

    Used for content-addressed artifacts (stages, checkpoints, converted tokenizers): readers
    only ever see a complete folder. If another process finished the same artifact first, its
    folder is kept and ours discarded — never deleted under a reader's feet.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
