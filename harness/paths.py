"""Where things live: big artifacts in a cache folder, small readable results in results/.

Every user-chosen name that becomes a path component (recipe, variant, source and task names) is
checked here, once, so no recipe can place a file outside the results root or the cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CACHE_ENV = "HARNESS_CACHE"
MACHINE_CACHE_ENV = "HARNESS_MACHINE_CACHE"
RESULTS_ENV = "HARNESS_RESULTS"
# The control arm's folder under results/<recipe>/: the recipe's `base`, which every arm is compared with.
CONTROL_NAME = "base"

# A path component that is the same on every filesystem and shell: ASCII letters and digits first,
# then also `. _ - + = , @`. No separators, no NUL, no leading dot (so never `.` or `..`).
NAME_MAX = 120
NAME_CHARS = "letters, digits and . _ - + = , @ (first character a letter, digit or _)"
_NAME_CLASS = "A-Za-z0-9._+=,@-"  # NAME_CHARS as a regular-expression class
_SAFE_NAME = re.compile(rf"[A-Za-z0-9_][{_NAME_CLASS}]*")
_UNSAFE_RUN = re.compile(rf"[^{_NAME_CLASS}]+")
UNSAFE_CHAR = re.compile(rf"[^{_NAME_CLASS}]")  # one character outside NAME_CHARS


def looks_like_path(spec: str) -> bool:
    """Written as a filesystem path (./x, ../x, /x, ~/x): never an embedded name, Hub id or task name."""
    return spec.startswith((".", "/", "~"))


def name_problem(name: object, max_length: int = NAME_MAX) -> str | None:
    """Why `name` cannot be a folder name (None when it can): the text of a recipe error."""
    if not isinstance(name, str):
        return f"must be a string (got {type(name).__name__})"
    if not name:
        return "must not be empty"
    if len(name) > max_length:
        return f"is {len(name)} characters long; at most {max_length} are allowed"
    if not _SAFE_NAME.fullmatch(name):
        shown = name if len(name) <= 60 else name[:57] + "..."
        return f"{shown!r} is not a safe folder name; allowed: {NAME_CHARS}"
    return None


def safe_component(text: str) -> str:
    """`text` with every run of unsafe characters replaced by `_` (for names built from values)."""
    cleaned = _UNSAFE_RUN.sub("_", text)
    return cleaned if cleaned[:1].isalnum() or cleaned[:1] == "_" else "_" + cleaned.lstrip(".")


def cache_root() -> Path:
    """Checkpoints, converted tokenizers, teacher rankings, mteb's raw cache.

    `$HARNESS_CACHE`, else `$XDG_CACHE_HOME/harness`, else `~/.cache/harness`.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


def scratch_root() -> Path:
    """Short-lived work folders (prediction files, torchrun configs): under the cache, beside the
    artifacts they feed, not in the system temp dir (small, often not shared across nodes)."""
    return cache_root() / "tmp"


def results_root() -> Path:
    """`$HARNESS_RESULTS`, else `./results` (the repo's results/ folder when run from its root)."""
    return Path(os.environ.get(RESULTS_ENV, "results"))


def machine_cache_root() -> Path:
    """Facts about this machine (the CPU's bf16 calibration), shared by every stage cache on it.

    `$HARNESS_MACHINE_CACHE`, else `$XDG_CACHE_HOME/harness-machine`, else `~/.cache/harness-machine`.
    """
    if os.environ.get(MACHINE_CACHE_ENV):
        return Path(os.environ[MACHINE_CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness-machine"
