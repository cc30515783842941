"""Errors the CLI prints as one clear message instead of a traceback.

`HarnessError` is a problem the user can fix in their input (bad recipe, missing model, bad data
row): exit code 2. `HarnessRuntimeError` is a run that failed for a reason outside the input (a
training subprocess or cluster job died): exit code 1. Both messages name the file and key, or
the path, and what to do.
"""

from __future__ import annotations

import os


class HarnessError(Exception):
    """An error caused by user input; its message names the file, key and what is allowed."""

    exit_code = 2


class HarnessRuntimeError(HarnessError):
    """A run failed for a reason outside the user's input; the message says where to look."""

    exit_code = 1


def not_utf8(path: str | os.PathLike[str], exc: UnicodeDecodeError) -> HarnessError:
    """A decode error as one message naming the file and the line of its first non-UTF-8 byte."""
    where, detail = str(path), f"{exc.reason}"
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        data.decode("utf-8")
    except UnicodeDecodeError as found:
        line = data.count(b"\n", 0, found.start) + 1
        where = f"{path}:{line}"
        detail = f"byte 0x{data[found.start]:02x} at offset {found.start}"
    except OSError:
        pass
    return HarnessError(f"{where}: not UTF-8 text ({detail}); save the file as UTF-8")
