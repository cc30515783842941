"""Resolve mteb benchmark and task names, including the two African benchmarks mteb defines
but does not register (mteb 2.26: `get_benchmark("MTEB(Africa, v1)")` raises KeyError).

Everything here reads mteb's local metadata only: listing a benchmark's tasks works offline;
loading their data is a separate step that needs the Hub.
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from typing import Any

from harness.errors import HarnessError
from harness.hub import hub_endpoint, hub_reachable  # noqa: F401 - their home is harness.hub (below data)

# name -> attribute in mteb.benchmarks.benchmarks.benchmarks, for benchmarks mteb leaves unregistered
_UNREGISTERED = {"MTEB(Africa, v1)": "MTEB_AFRICA", "MTEB(Africa, v1, lite)": "MTEB_AFRICA_LITE"}
ALIASES = {"AfriMTEB": "MTEB(Africa, v1)", "AfriMTEB-Lite": "MTEB(Africa, v1, lite)"}


@lru_cache(maxsize=None)
def _registered_names() -> tuple[str, ...]:
    import mteb

    names: set[str] = set()
    for bench in mteb.get_benchmarks():
        names.add(bench.name)
        names.update(getattr(bench, "aliases", None) or [])
    return tuple(sorted(names))


def benchmark_names() -> list[str]:
    return sorted({*_registered_names(), *_UNREGISTERED, *ALIASES})


def get_benchmark(name: str) -> Any:
    """An mteb Benchmark by name or alias; unknown names fail with the closest matches."""
    import mteb

    canonical = ALIASES.get(name, name)
    if canonical in _UNREGISTERED:
        from mteb.benchmarks.benchmarks import benchmarks as defined

        bench = getattr(defined, _UNREGISTERED[canonical], None)
        if bench is not None:
            return bench
    try:
        return mteb.get_benchmark(canonical)
    except KeyError:
        close = difflib.get_close_matches(name, benchmark_names(), n=5, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}" if close else ""
        raise HarnessError(f"unknown mteb benchmark {name!r}{hint}") from None


def get_mteb_task(name: str) -> Any:
    import mteb

    try:
        return mteb.get_task(name)
    except KeyError:
        all_names = [t.metadata.name for t in mteb.get_tasks(exclude_superseded=False)]
        close = difflib.get_close_matches(name, all_names, n=5, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}" if close else ""
        raise HarnessError(f"unknown task {name!r} (neither a harness task nor an mteb task){hint}") from None


def describe_task(task: Any) -> tuple[str, str, str]:
    """(name, type, languages) from local metadata, for --dry-run listings."""
    meta = task.metadata
    by_subset = meta.hf_subsets_to_langscripts
    kept = getattr(task, "hf_subsets", None) or list(by_subset)  # eval.languages may keep a slice
    codes = sorted({code.split("-")[0] for subset in kept for code in by_subset.get(subset, [])})
    shown = ", ".join(codes[:12]) + (f" (+{len(codes) - 12})" if len(codes) > 12 else "")
    return meta.name, meta.type, shown


def require_hub_data(task: Any) -> None:
    """Fail at once, with a clear message, when a Hub-hosted task's data cannot be had."""
    if hub_reachable():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # huggingface_hub and datasets read these at import time; flip their constants as well,
    # or the client still retries with back-off for ~30 s.
    import datasets.config
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    try:
        task.load_data()
    except Exception as exc:  # noqa: BLE001 - any loader failure means "not available offline"
        path = task.metadata.dataset.get("path")
        raise HarnessError(
            f"task {task.metadata.name}: its dataset {path!r} is not available offline (the Hugging Face Hub "
            f"at {hub_endpoint()} is unreachable and it is not in the local cache): {type(exc).__name__}"
        ) from None
