"""Content fingerprints of local model folders, so stage keys follow the weights, not the path.

A backbone or teacher named by a folder is keyed by what is inside it: every file's relative path,
size and sha256. Hashing a 1 GB checkpoint costs about a second, so each file's digest is cached
by (path, size, mtime_ns, inode) in the machine cache (harness.paths.machine_cache_root) and computed
again only when the file changes.
Replacing the weights in a folder therefore gives new train and teacher stages.
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


def _digest_cache_file(folder: Path) -> Path:
    """Per machine (a folder's files are facts about this machine's disk), not per stage cache."""
    from harness.paths import machine_cache_root

    return machine_cache_root() / "fingerprints" / f"{content_hash(str(folder.resolve()), 16)}.json"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    """Every regular file under `folder` except hidden ones (staging leftovers, .git, caches)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def folder_fingerprint(folder: str | Path) -> str:
    """sha256-based fingerprint of a folder's files (names, sizes, contents); cached by mtime."""
    from harness import atomic

    folder = Path(folder)
    cache_file = _digest_cache_file(folder)
    try:
        cached: dict[str, Any] = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    entries: dict[str, Any] = {}
    files = []
    changed = False
    for path in _files(folder):
        stat = path.stat()
        rel = path.relative_to(folder).as_posix()
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        known = cached.get(rel)
        if known and known.get("stamp") == stamp:
            digest = known["sha256"]
        else:
            digest, changed = _file_sha256(path), True
        entries[rel] = {"stamp": stamp, "sha256": digest}
        files.append([rel, stat.st_size, digest])
    if changed or set(entries) != set(cached):
        try:
            atomic.write_json(cache_file, entries)
        except OSError:
            pass  # a read-only cache only costs hashing again next time
    return content_hash({"v": FINGERPRINT_VERSION, "files": files}, 16)


def backbone_identity(spec: str) -> dict[str, Any]:
    """What decides a backbone's weights: the spec, plus the folder's fingerprint when it is local.

    Embedded names resolve to folders too (the minilm package, the seeded tiny-qwen2 build), so an
    upgraded package or transformers' init change is seen; Hub ids are keyed by name; a trained
    variant (`variant:RECIPE/VARIANT`) by its train-stage hash.
    """
    from harness.backbones import resolve_path
    from harness.refsyntax import is_reference, resolver_for

    if is_reference(spec):  # keyed by its train stage, trained or not
        return resolver_for(spec).identity(spec)
    source = resolve_path(spec)
    if Path(source).is_dir():
        return {"spec": spec, "fingerprint": folder_fingerprint(source)}
    return {"spec": spec}
