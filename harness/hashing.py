"""Content hashes of configs and data: the keys of every cached stage."""

from __future__ import annotations

import hashlib
import json
from typing import Any

HASH_LEN = 12


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(obj: Any, length: int = HASH_LEN) -> str:
    """Short sha256 of the canonical JSON of `obj` (dict key order never matters)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def bytes_hash(data: bytes, length: int = HASH_LEN) -> str:
    return hashlib.sha256(data).hexdigest()[:length]
