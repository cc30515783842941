"""The data key: a data config plus what its inputs *are*, so a stage follows the bytes, not the path.

A `flag-jsonl` or `parquet` source (a file or a folder) is keyed by its content fingerprint
(harness.content: size + mtime as the quick check, sha256 when they change, cached per machine); a
local `hf-dataset` folder likewise; a Hub `hf-dataset` by the commit its `revision` resolves to
(harness.hub). Editing a source in place gives a new data stage; touching it gives the same one.

`unchanged_while` is the guard on the other side: a file that changes while a stage is built
(size or mtime before vs after) stops the build, so the stage is never committed under a key that
names other bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.config import PATH_KINDS, DataConfig, SourceConfig
from harness.errors import HarnessError


def source_path(source: SourceConfig) -> Path | None:
    """The local file or folder a source reads, if it reads one."""
    if source.kind in PATH_KINDS and source.path:
        return Path(source.path).expanduser()
    if source.kind == "hf-dataset" and source.dataset and Path(source.dataset).expanduser().exists():
        return Path(source.dataset).expanduser()
    return None


def source_identity(source: SourceConfig) -> dict[str, str] | None:
    """What a source's rows come from beyond its config: content fingerprint or Hub commit; None for
    the built-in sources (their data is keyed by the config and the package that makes it)."""
    from harness.content import path_fingerprint
    from harness.hub import resolve_commit

    path = source_path(source)
    if path is not None:
        return {"content": path_fingerprint(path) if path.exists() else "missing"}  # the build says what is wrong
    if source.kind == "hf-dataset" and source.dataset:
        return {"commit": resolve_commit(source.dataset, "dataset", source.revision)}
    return None


def data_key(config: DataConfig, *, with_filter: bool = True) -> dict[str, Any]:
    """The data config as JSON, each read source with its `input` identity (weight-0 sources are not read).

    An unset `revision` is left out, so recipes without Hub datasets keep their stage hashes.
    """
    data = config.model_dump(mode="json", exclude=None if with_filter else {"filter"})
    for name, source in config.sources.items():
        entry = data["sources"][name]
        if entry.get("revision") is None:
            entry.pop("revision", None)
        identity = source_identity(source) if source.weight > 0 else None
        if identity is not None:
            entry["input"] = identity
    return data


def input_stamps(config: DataConfig) -> dict[str, list[int]]:
    """(size, mtime_ns, inode) of every local file the config's read sources name, by path."""
    from harness.content import path_stamps

    stamps: dict[str, list[int]] = {}
    for source in config.sources.values():
        path = source_path(source) if source.weight > 0 else None
        if path is not None and path.exists():
            base = path if path.is_dir() else path.parent
            stamps.update({str(base / rel): stamp for rel, stamp in path_stamps(path).items()})
    return stamps


@contextmanager
def unchanged_while(config: DataConfig, what: str) -> Iterator[None]:
    """Run a build; afterwards, raise (so nothing is committed) if a source file changed meanwhile."""
    before = input_stamps(config)
    yield
    after = input_stamps(config)
    changed = sorted(p for p in before.keys() | after.keys()
                     if before.get(p) != after.get(p))
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise HarnessError(f"{changed[0]}{more}: changed while the {what} was built (size or modification time "
                           f"differs before vs after); the {what} is not kept: run again once the file is final")
