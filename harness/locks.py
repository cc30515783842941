"""Compute each artifact once, even when several processes or cluster jobs share one cache.

Two runs of the same recipe (two terminals, or SLURM jobs on a shared filesystem) used to compute
the same stage twice. Now every artifact has a lock file beside it (`.<name>.lock`): the first
process computes, the others wait, then find it done. The lock is `filelock.FileLock`: a kernel
`flock`, which the OS releases when its holder dies (so a killed run never blocks the next one);
on filesystems without `flock` it is filelock's soft lock, a marker file holding the owner's pid
and host, which a waiter on the same host breaks once that pid is gone. Lock files of finished
artifacts are removed, so a complete cache holds only artifacts.

The API is two calls, and one for measurements:
- `build_once(final, build)` — the one path every stage kind uses: if `final` is missing, take its
  lock, look again, clean stale staging, build into a staging folder, rename into place; if it is
  there (a cache hit), still remove staging whose owner is provably dead, or a killed writer's
  leftovers beside an artifact that someone else finished would never go;
- `locked(*finals)` — hold the locks of several artifacts (in a fixed order: no deadlock), for
  code that computes several at once (the eval stages of one model);
- `measure_once(path, measure)` — a fact of this machine kept as one JSON file (the bf16
  calibration, a throughput probe): measured by one process, read by the others.
A child process that works for a lock holder (the torchrun ranks of a train stage) inherits the
hold through `inherit_env`, so it does not wait for its own parent.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.atomic import remove_stale_staging, staged_dir, staging_owners

HELD_ENV = "HARNESS_HELD_LOCKS"
_NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK}
_held: dict[str, int] = {}  # lock path -> re-entry depth, in this process


def lock_path(final: str | os.PathLike[str]) -> Path:
    final = Path(final)
    return final.parent / f".{final.name}.lock"


def _inherited() -> set[str]:
    return {p for p in os.environ.get(HELD_ENV, "").split(os.pathsep) if p}


def _holder_text(final: Path) -> str:
    owners = sorted({tag for _, tag in staging_owners(final) if tag})
    if not owners:
        return ""
    pid_host = [tag.split("@")[0].split("-")[0] + " on " + tag.split("@")[1] for tag in owners]
    return f" (being written by pid {', '.join(pid_host)})"


def _acquire(path: str, what: str, final: Path, log: Callable[[str], None]) -> tuple[Any, bool]:
    """Take the lock at `path`; returns (lock, native). Waits (saying so once) while it is held."""
    import filelock

    lock: Any = filelock.FileLock(path, fallback_to_soft=False)
    native = True
    try:
        lock.acquire(timeout=0)
        return lock, native
    except filelock.Timeout:
        pass
    except (NotImplementedError, OSError) as exc:  # no flock on this filesystem (some NFS / Lustre mounts)
        if isinstance(exc, OSError) and exc.errno not in _NO_FLOCK:
            raise
        lock, native = filelock.SoftFileLock(path), False  # marker with pid + host; dead holders broken
        try:
            lock.acquire(timeout=0)
            return lock, native
        except filelock.Timeout:
            pass
    log(f"waiting for {what}: another process is computing it{_holder_text(final)}; lock {path}")
    lock.acquire()
    return lock, native


@contextlib.contextmanager
def _hold(final: Path, what: str, log: Callable[[str], None], done: Callable[[], bool]) -> Iterator[None]:
    path = str(lock_path(final))
    if path in _held or path in _inherited():  # re-entry, or our parent holds it for us
        _held[path] = _held.get(path, 0) + 1
        try:
            yield
        finally:
            _held[path] -= 1
            if not _held[path]:
                del _held[path]
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    lock, native = _acquire(path, what, final, log)
    _held[path] = 1
    try:
        yield
    finally:
        del _held[path]
        # Once the artifact is done its lock file is not needed: every holder checks `done` first,
        # so a waiter on the unlinked file and a newcomer on a fresh one both find it done. (A soft
        # lock's marker is removed by its release.) After a failure the empty lock file stays.
        if native and done():
            with contextlib.suppress(OSError):
                os.unlink(path)
        lock.release()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(*finals: str | os.PathLike[str], what: str = "", log: Callable[[str], None] = _stderr,
           done: Callable[[Path], bool] = Path.exists) -> Iterator[None]:
    """Hold the locks of `finals` (acquired in sorted order, so two holders never deadlock).

    `done(final)` says when an artifact is complete (default: it exists); a done artifact's lock
    file is removed on release, so a finished cache holds no lock files.
    """
    with contextlib.ExitStack() as stack:
        for final in sorted({Path(f) for f in finals}, key=str):
            stack.enter_context(_hold(final, what or str(final), log, lambda final=final: done(final)))
        yield


def build_once(final: str | os.PathLike[str], build: Callable[[Path], None], *, what: str = "",
               log: Callable[[str], None] = _stderr) -> bool:
    """Make `final` exist, computing it at most once across processes; True if built here.

    `build(tmp)` writes the artifact's files into `tmp`, a staging folder that is renamed to
    `final` on success and removed on failure — a failing build leaves nothing behind but its
    lock file. Staging left by dead owners of `final` is removed first — on a cache hit too, so a
    killed writer's leftovers go whoever finished the artifact (no lock needed: only staging of a
    provably dead owner is touched, and no live process can be using it).
    """
    final = Path(final)
    if final.exists():
        remove_stale_staging(final)
        return False
    with locked(final, what=what, log=log):
        if final.exists():  # another process built it while we waited
            remove_stale_staging(final, legacy=True)
            return False
        remove_stale_staging(final, legacy=True)
        with staged_dir(final) as tmp:
            build(tmp)
    return True


def measure_once(path: str | os.PathLike[str], measure: Callable[[], dict[str, Any]], *,
                 numbers: tuple[str, ...] = (), what: str = "", log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """A measurement of this machine kept as one JSON file (the machine cache): read it, else take
    its lock, read again, and only then `measure()` and write it. A second process that needs the
    same measurement meanwhile waits and reads it, instead of measuring at the same time (which
    costs the work twice and skews both numbers, each run beside the other). A file that cannot be
    read, or whose `numbers` keys do not all hold numbers, is measured again; a read-only cache
    measures without the lock and keeps nothing."""
    import json

    from harness.atomic import write_json

    final = Path(path)

    def stored() -> dict[str, Any] | None:
        try:
            found = json.loads(final.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(found, dict):
            return None
        return found if all(isinstance(found.get(k), int | float) for k in numbers) else None

    hit = stored()
    if hit is not None:
        return hit
    with contextlib.ExitStack() as guard:
        with contextlib.suppress(OSError):  # a read-only machine cache: measure without the lock
            guard.enter_context(locked(final, what=what or str(final), log=log))
        hit = stored()
        if hit is not None:
            return hit
        result = measure()
        with contextlib.suppress(OSError):  # a read-only cache only costs a re-measurement next time
            write_json(final, result)
    return result


def inherit_env(*finals: str | os.PathLike[str]) -> dict[str, str]:
    """Environment for a child process that works under locks this process holds on `finals`."""
    paths = _inherited() | {str(lock_path(f)) for f in finals}
    return {**os.environ, HELD_ENV: os.pathsep.join(sorted(paths))}
