"""Where things live: big artifacts in a cache folder, small readable results in results/."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "HARNESS_CACHE"
MACHINE_CACHE_ENV = "HARNESS_MACHINE_CACHE"
RESULTS_ENV = "HARNESS_RESULTS"


def cache_root() -> Path:
    """Checkpoints, converted tokenizers, teacher rankings, mteb's raw cache.

    `$HARNESS_CACHE`, else `$XDG_CACHE_HOME/harness`, else `~/.cache/harness`.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


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
