"""Resolve mteb benchmark and task names, including the two African benchmarks mteb defines
but does not register (mteb 2.26: `get_benchmark("MTEB(Africa, v1)")` raises KeyError).

Everything here reads mteb's local metadata only: listing a benchmark's tasks works offline;
loading their data is a separate step that needs the Hub.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

from harness.errors import HarnessError
from harness.hub import hub_endpoint, hub_reachable

# name -> attribute in mteb.benchmarks.benchmarks.benchmarks, for benchmarks mteb leaves unregistered
_UNREGISTERED = {"MTEB(Africa, v1)": "MTEB_AFRICA", "MTEB(Africa, v1, lite)": "MTEB_AFRICA_LITE"}
ALIASES = {"AfriMTEB": "MTEB(Africa, v1)", "AfriMTEB-Lite": "MTEB(Africa, v1, lite)"}

# The harness's own offline benchmarks: every task built from data inside installed packages, one
# or more per mteb task type. The lite cut keeps one task per type, the cheapest to encode: of the
# three Retrieval tasks, Valentine column matching (268 texts; code retrieval has 2182 and FEBRL4
# tuple matching 2016), so the quickstart stays within its 5-minute budget on a 2-core CPU.
OFFLINE_TASKS: tuple[str, ...] = (
    "HarnessCodeRetrieval", "HarnessFEBRLTupleMatching", "HarnessValentineColumnMatching",  # Retrieval
    "HarnessCLDRBitextMining",  # BitextMining
    "HarnessDocstringClassification",  # Classification
    "HarnessCLDRTerritoryClustering",  # Clustering
    "HarnessFEBRLPairClassification",  # PairClassification
    "HarnessCodeReranking",  # Reranking
    "HarnessFEBRLRecordSTS",  # STS
)
HARNESS_BENCHMARKS: dict[str, tuple[str, ...]] = {
    "Harness(offline, v1)": OFFLINE_TASKS,
    "Harness(offline, v1, lite)": tuple(t for t in OFFLINE_TASKS
                                        if t not in ("HarnessCodeRetrieval", "HarnessFEBRLTupleMatching")),
}


@lru_cache(maxsize=None)
def _registered_names() -> tuple[str, ...]:
    import mteb

    names: set[str] = set()
    for bench in mteb.get_benchmarks():
        names.add(bench.name)
        names.update(getattr(bench, "aliases", None) or [])
    return tuple(sorted(names))


def benchmark_names() -> list[str]:
    return sorted({*_registered_names(), *_UNREGISTERED, *ALIASES, *HARNESS_BENCHMARKS})


def get_benchmark(name: str) -> Any:
    """An mteb Benchmark by name or alias; unknown names fail with the closest matches."""
    import mteb

    if name in HARNESS_BENCHMARKS:
        return _harness_benchmark(name)
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


def _harness_benchmark(name: str) -> Any:
    """An mteb Benchmark over harness tasks (built here: their data is in memory). mteb cannot look
    these tasks up by name, so its own Mean(TaskType) would fail: the harness report computes
    Mean(Task), Mean(TaskType) and Borda itself."""
    import mteb
    from mteb.benchmarks.benchmark import BenchmarkAggregation

    from harness.evaluate.tasks import get_task

    return mteb.Benchmark(name=name, tasks=[get_task(task) for task in HARNESS_BENCHMARKS[name]],
                          description="The harness's offline suite: every task from data inside installed packages.",
                          aggregations=(BenchmarkAggregation.MEAN_TASK,))


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
    from harness.hub import offline

    try:
        with offline():  # from the local cache only: no ~30 s retry loop against an unreachable Hub
            task.load_data()
    except Exception as exc:  # noqa: BLE001 - any loader failure means "not available offline"
        path = task.metadata.dataset.get("path")
        raise HarnessError(
            f"task {task.metadata.name}: its dataset {path!r} is not available offline (the Hugging Face Hub "
            f"at {hub_endpoint()} is unreachable and it is not in the local cache): {type(exc).__name__}"
        ) from None
