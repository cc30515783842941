"""Content fingerprints of local model folders, so stage keys follow the weights, not the path.

A backbone or teacher named by a folder is keyed by what is inside it (harness.content: every
file's relative path, size and sha256, cached per machine by stamp); a Hub id by the commit its
revision resolves to (harness.hub_revision). Replacing the weights in a folder, or a new commit on
the Hub, therefore gives new train and teacher stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.content import path_fingerprint


def folder_fingerprint(folder: str | Path) -> str:
    """A backbone folder's content fingerprint (harness.content: the one rule for every local input)."""
    return path_fingerprint(folder)


def backbone_identity(spec: str) -> dict[str, Any]:
    """What decides a backbone's weights: the spec, plus the folder's fingerprint when it is local.

    Embedded names resolve to folders too (the minilm package, the seeded tiny-qwen2 build), so an
    upgraded package or transformers' init change is seen; Hub ids by the commit their default branch
resolves to at plan time (harness.hub: the Hub, else the local Hub cache); a trained
    variant (`variant:RECIPE/VARIANT`) by its train-stage hash.
    """
    from harness.backbones import resolve_path
    from harness.refsyntax import is_reference, resolver_for

    if is_reference(spec):  # keyed by its train stage, trained or not
        return resolver_for(spec).identity(spec)
    source = resolve_path(spec)
    if Path(source).is_dir():
        return {"spec": spec, "fingerprint": folder_fingerprint(source)}
    from harness.hub import resolve_commit

    return {"spec": spec, "commit": resolve_commit(source, "model")}
