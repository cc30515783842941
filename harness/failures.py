"""Turn every expected failure into one message and an exit code; leave tracebacks for bugs.

Exit codes: 2 — bad input the user can fix (a recipe, a config, a data file); 1 — the run failed
for a reason outside the input (disk full, permissions, a crashed subprocess) or a bug; 130 —
interrupted. `--debug` (or HARNESS_DEBUG=1) adds the traceback to every message. Unexpected exceptions always print
their traceback, after a one-line summary: they are bugs worth seeing.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import TextIO

from harness.errors import HarnessError

INPUT, RUNTIME, INTERRUPTED = 2, 1, 130
DEBUG_ENV = "HARNESS_DEBUG"  # same as --debug; reaches executor jobs and torchrun ranks too


def _nearest_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:
            continue
    return None


def _free_space(path: Path) -> str:
    existing = _nearest_existing(path)
    if existing is None:
        return "free space unknown"
    try:
        usage = shutil.disk_usage(existing if existing.is_dir() else existing.parent)
    except OSError:
        return "free space unknown"
    return f"{_size(usage.free)} free of {_size(usage.total)} on that filesystem"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _os_message(exc: OSError) -> str:
    path = exc.filename if exc.filename is not None else "(path unknown)"
    where = Path(str(path))
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if code == errno.ENOSPC else "disk quota exceeded"
        return (f"{what} while writing {path} ({_free_space(where)}); free some space or point "
                "$HARNESS_CACHE / --results elsewhere, then run the same command: finished stages are kept")
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {path}; choose a folder you can write to (or fix its permissions)"
    if code == errno.EROFS:
        return f"read-only file system: {path}; point $HARNESS_CACHE / --results at a writable folder"
    if code == errno.ENOTDIR:
        blocker = next((p for p in (where, *where.parents) if p.is_file()), None)
        detail = f"{blocker} is a file, not a folder" if blocker else "a parent of it is not a folder"
        return f"cannot create {path}: {detail}"
    if code == errno.EEXIST and where.is_file():
        return f"cannot create folder {path}: a file with that name exists"
    if code == errno.EISDIR:
        return f"{path} is a folder; a file was expected"
    if code == errno.ENOENT:
        return f"{path}: no such file or folder"
    reason = exc.strerror or type(exc).__name__
    target = f" ({exc.filename2})" if getattr(exc, "filename2", None) else ""
    return f"{reason}: {path}{target}"


def describe(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for an expected failure class; None for a bug."""
    if isinstance(exc, HarnessError):
        return str(exc), getattr(exc, "exit_code", INPUT)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted: finished stages are cached; run the same command to resume", INTERRUPTED
    if isinstance(exc, UnicodeDecodeError):
        return (f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); files read by the harness "
                "must be UTF-8 (run with --debug to see which reader failed)"), INPUT
    if isinstance(exc, OSError):
        return _os_message(exc), RUNTIME
    if isinstance(exc, MemoryError):
        return "out of memory; lower batch sizes or max_rows, or run on a larger machine", RUNTIME
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = "; ".join(f"`{'.'.join(str(p) for p in e['loc']) or exc.title}`: {e['msg']}"
                             for e in exc.errors())
        return f"invalid {exc.title} settings: {problems}", INPUT
    return None


def report(exc: BaseException, *, debug: bool = False, stream: TextIO | None = None) -> int:
    """Print `exc` as the CLI does and return the exit code."""
    stream = stream or sys.stderr
    known = describe(exc)
    if known is None:
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=stream)
        print("This is a bug in the harness; please report it with the traceback below.", file=stream)
        traceback.print_exception(exc, file=stream)
        return RUNTIME
    message, code = known
    if code == INTERRUPTED:
        print(message, file=stream)
    else:
        print(f"error: {message}", file=stream)
    if debug or os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc, file=stream)
    return code
