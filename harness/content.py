"""Content fingerprints of local files and folders, so cache keys follow the bytes, not the path.

One rule for every input named by a path (a backbone or teacher folder, a flag-jsonl or parquet
source): every file's relative path, size and sha256. Hashing a 1 GB file costs about a second, so
each file's digest is cached by its stamp (size, mtime_ns, inode) in the machine cache
(harness.paths.machine_cache_root) and computed again only when the stamp changes: a file
rewritten in place gets a new fingerprint, a file only touched keeps its fingerprint (after one
re-hash that finds the same bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from harness.hashing import content_hash

FINGERPRINT_VERSION = 1
_CHUNK = 8 * 1024 * 1024
Stamp = list[int]


def _digest_cache_file(path: Path) -> Path:
    """Per machine (a path's files are facts about this machine's disk), not per stage cache."""
    from harness.paths import machine_cache_root

    return machine_cache_root() / "fingerprints" / f"{content_hash(str(path.resolve()), 16)}.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def files_under(path: Path) -> list[Path]:
    """A file itself, or every regular file under a folder except hidden ones (staging, .git, caches)."""
    if path.is_file():
        return [path]
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def _stamp(path: Path) -> Stamp:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _relative(file: Path, path: Path) -> str:
    return file.name if file == path else file.relative_to(path).as_posix()


def path_stamps(path: str | Path) -> dict[str, Stamp]:
    """The quick check: (size, mtime_ns, inode) of every file a path names, by relative path."""
    path = Path(path)
    return {_relative(f, path): _stamp(f) for f in files_under(path)}


def path_fingerprint(path: str | Path) -> str:
    """sha256-based fingerprint of a file's or folder's files (names, sizes, contents); cached by stamp."""
    from harness import atomic

    path = Path(path)
    cache_file = _digest_cache_file(path)
    try:
        cached: dict[str, Any] = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    entries: dict[str, Any] = {}
    files = []
    changed = False
    for file in files_under(path):
        stamp = _stamp(file)
        rel = _relative(file, path)
        known = cached.get(rel)
        if known and known.get("stamp") == stamp:
            digest = known["sha256"]
        else:
            digest, changed = file_sha256(file), True
        entries[rel] = {"stamp": stamp, "sha256": digest}
        files.append([rel, stamp[0], digest])
    if changed or set(entries) != set(cached):
        try:
            atomic.write_json(cache_file, entries)
        except OSError:
            pass  # a read-only cache only costs hashing again next time
    return content_hash({"v": FINGERPRINT_VERSION, "files": files}, 16)
