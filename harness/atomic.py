"""Atomic writes: every artifact is written to a temp path in the same folder, then renamed.

A crash therefore leaves either the old file or the new one, never half of one. Temp names carry
their owner (`.<name>.<pid>-<start>@<host>.<random>.tmp`), so leftovers of a killed process are
removed by whoever comes next, while a live writer's temp folder is never touched — even when
another process or cluster job works on the same cache. Files and folders get the user's normal
permissions (umask), not tempfile's private 0600/0700: results folders are often shared.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

# ----------------------------------------------------------------------------- owners

_TAG = re.compile(r"(\d+)-(\d+)@([A-Za-z0-9-]+)")
_LEGACY = re.compile(r"[a-z0-9_]{8}")
_HOST: list[str] = []


def _host() -> str:
    if not _HOST:
        _HOST.append(re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:48].strip("-") or "host")
    return _HOST[0]


def _start_ticks(pid: int) -> int:
    """The process's start time (clock ticks since boot) from /proc; 0 when unknown.

    With the pid it identifies a process even after its pid is reused. Read from /proc rather
    than through psutil to avoid a dependency for one number; elsewhere it is 0 and only the pid
    is checked.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def owner_tag() -> str:
    """`<pid>-<start>@<host>` of this process: written into every temp name it creates."""
    pid = os.getpid()
    return f"{pid}-{_start_ticks(pid)}@{_host()}"


def owner_gone(tag: str) -> bool:
    """True only when the owner is provably dead: it ran on this host and its pid is no longer
    running (or now belongs to a process that started later). Another host's owner is never
    presumed dead: its temp folder may belong to a live job on a shared filesystem."""
    match = _TAG.fullmatch(tag)
    if match is None or match.group(3) != _host():
        return False
    pid, start = int(match.group(1)), int(match.group(2))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    now = _start_ticks(pid)
    return bool(start and now and now != start)


def _temp_path(final: Path) -> Path:
    return final.parent / f".{final.name}.{owner_tag()}.{secrets.token_hex(4)}.tmp"


def staging_owners(final: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """Temp files/folders next to `final` and their owner tags ('' for untagged legacy ones)."""
    final = Path(final)
    prefix = f".{final.name}."
    out = []
    for path in sorted(final.parent.glob(f"{glob.escape(prefix)}*.tmp")):
        middle = path.name[len(prefix):-len(".tmp")]
        tag, _, suffix = middle.rpartition(".")
        if _TAG.fullmatch(tag) and re.fullmatch(r"[0-9a-f]{8}", suffix):
            out.append((path, tag))
        elif _LEGACY.fullmatch(middle):  # tempfile's 8 random characters, no owner
            out.append((path, ""))
    return out


def remove_stale_staging(final: str | os.PathLike[str], *, legacy: bool = False) -> list[Path]:
    """Delete temp files and folders for `final` whose owner is provably gone; return them.

    `legacy=True` also removes untagged ones (written before temp names carried an owner); call
    it only while holding `final`'s lock (harness.locks), which every writer of this version holds.
    """
    removed = []
    for path, tag in staging_owners(final):
        if (tag and owner_gone(tag)) or (legacy and not tag):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(path)
    return removed


# ----------------------------------------------------------------------------- storage errors

# How libraries word a short write: torch ("unexpected pos N vs M", "file write failed"),
# safetensors / Rust ("StorageFull", "os error 28"), C stdio ("No space left on device").
_NO_SPACE_HINTS = ("no space left", "storagefull", "os error 28", "errno 28", "file write failed",
                   "unexpected pos", "disk quota exceeded")
NEARLY_FULL = 16 * 1024 * 1024


def _nearly_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path if path.is_dir() else path.parent).free < NEARLY_FULL
    except OSError:
        return False


def _with_path(exc: BaseException, path: Path) -> BaseException:
    """Name the path on storage errors that lack it; turn libraries' disk-full errors into ENOSPC.

    torch and safetensors report a full disk as RuntimeError / SafetensorError text, not OSError:
    without this the CLI could not say which disk is full. A failure while the disk holding
    `path` has under 16 MiB free is taken as a full disk too.
    """
    if isinstance(exc, OSError):
        if exc.filename is None:
            exc.filename = str(path)
        return exc
    if isinstance(exc, Exception) and not isinstance(exc, MemoryError | HarnessError) and (
            any(h in str(exc).lower() for h in _NO_SPACE_HINTS) or _nearly_full(path)):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return exc


# ----------------------------------------------------------------------------- files


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    tmp = _temp_path(path)
    try:
        # os.open with 0o666 lets the umask decide the mode (mkstemp would force 0600)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # absent, or a read-only disk: the first error is the news
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is not None and os.fspath(exc.filename) == str(tmp):
            exc.filename = str(path)  # name the file the user asked for, not our temp name
        converted = _with_path(exc, path)
        if converted is exc:
            raise
        raise converted from exc
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


# ----------------------------------------------------------------------------- folders


def _make_temp_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = _temp_path(final)
        try:
            tmp.mkdir(mode=0o777)  # the umask decides, as for any folder the user creates
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp name", str(final))


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp folder next to `final`; on success it is renamed to `final`.

    Used for content-addressed artifacts (stages, checkpoints, converted tokenizers): readers
    only ever see a complete folder. If another process finished the same artifact first, its
    folder is kept and ours discarded — never deleted under a reader's feet. Temp folders of
    dead owners for the same artifact are removed first; to compute an artifact only once across
    processes, wrap this in `harness.locks.build_once`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    tmp = _make_temp_dir(final)
    try:
        try:
            yield tmp
        except BaseException as exc:
            converted = _with_path(exc, tmp)
            if converted is exc:
                raise
            raise converted from exc
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """A private work folder under the cache's tmp/ (not the system temp dir), removed on exit.

    Left-overs of killed processes with the same `name` are removed when the next one starts.
    """
    from harness.paths import scratch_root

    anchor = scratch_root() / name  # never created itself: only its owner-tagged temp folders
    anchor.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(anchor)
    tmp = _make_temp_dir(anchor)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
