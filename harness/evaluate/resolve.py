"""Turn a variant's `eval` section into task objects: harness tasks, mteb tasks, mteb benchmarks."""

from __future__ import annotations

import copy
from typing import Any

from harness.config import EvalConfig


def is_local(task: Any) -> bool:
    """Harness-built tasks carry their data in memory; mteb's own tasks live on the Hub."""
    return str(task.metadata.dataset.get("path", "")).startswith("harness/")


def resolve_tasks(config: EvalConfig) -> dict[str, Any]:
    """Task name -> task object, in a stable order: named tasks first, then benchmark tasks."""
    from harness.errors import HarnessError
    from harness.evaluate.tasks import REGISTRY, get_task, is_task_folder

    tasks: dict[str, Any] = {}
    for name in config.tasks:
        if name in REGISTRY or is_task_folder(name):
            task = get_task(name)
        else:
            from harness.evaluate.benchmarks import get_mteb_task

            task = get_mteb_task(name)
        if not restrict_languages(task, config.languages):
            raise HarnessError(f"eval.tasks: {task.metadata.name} has no subset in eval.languages "
                               f"{config.languages} (its subsets: {', '.join(all_subsets(task))})")
        tasks[task.metadata.name] = task
    for bench_name in config.benchmarks:
        from harness.evaluate.benchmarks import get_benchmark

        for shared in get_benchmark(bench_name).tasks:
            task = copy.copy(shared) if config.languages else shared  # mteb's benchmark objects are shared
            if task.metadata.name not in tasks and restrict_languages(task, config.languages):
                tasks[task.metadata.name] = task
    return tasks


def all_subsets(task: Any) -> list[str]:
    return list(task.metadata.hf_subsets_to_langscripts)


def restrict_languages(task: Any, languages: list[str] | None) -> bool:
    """Keep only the subsets of a multilingual `task` in `languages` (mteb's own filter); False if
    none is left. Monolingual tasks are kept whole: `languages` picks a multilingual slice (e.g.
    AfriMTEB-Lite's languages of a bitext task), it does not drop English retrieval tasks."""
    if languages is None or len(all_subsets(task)) <= 1:
        return True
    try:
        task.filter_languages(languages)
    except ValueError:  # mteb: "No subsets were found ..."
        return False
    return bool(task.hf_subsets)


def eval_revision(task: Any) -> str:
    """The data revision an eval stage is keyed by: the dataset revision, plus the kept subsets when
    `eval.languages` dropped some (so a restricted run never reuses or feeds a full one's stage)."""
    from harness.hashing import content_hash

    revision = str(task.metadata.dataset.get("revision"))
    kept = list(getattr(task, "hf_subsets", None) or all_subsets(task))
    if sorted(kept) == sorted(all_subsets(task)):
        return revision
    return f"{revision}+subsets-{content_hash(sorted(kept))}"


def names_a_folder(name: str) -> bool:
    """An `eval.tasks` entry written as a path: never an mteb task name (those have no `/`)."""
    from harness.paths import looks_like_path

    return looks_like_path(name) or "/" in name


def check_names(config: EvalConfig) -> None:
    """Validate names against local metadata only (mteb is imported only for non-harness names)."""
    from harness.evaluate.tasks import REGISTRY, is_task_folder

    foreign = [n for n in config.tasks if n not in REGISTRY and not is_task_folder(n)]
    if not foreign and not config.benchmarks:
        return
    from harness.errors import HarnessError
    from harness.evaluate.benchmarks import HARNESS_BENCHMARKS, get_benchmark, get_mteb_task

    for name in foreign:
        if names_a_folder(name):
            raise HarnessError(f"no such task folder {name!r} (a table-matching task folder holds task.yaml)")
        get_mteb_task(name)
    for name in config.benchmarks:
        if name not in HARNESS_BENCHMARKS:  # harness benchmarks name registry tasks only
            get_benchmark(name)


def task_names(config: EvalConfig) -> list[str]:
    """The names `resolve_tasks` would return, without building any task's data."""
    from harness.evaluate.tasks import is_task_folder

    names = [_folder_task_name(n) if is_task_folder(n) else n for n in dict.fromkeys(config.tasks)]
    for bench_name in config.benchmarks:
        from harness.evaluate.benchmarks import HARNESS_BENCHMARKS, get_benchmark

        if bench_name in HARNESS_BENCHMARKS and config.languages is None:  # no task needs building
            names += [t for t in HARNESS_BENCHMARKS[bench_name] if t not in names]
            continue
        names += [t.metadata.name for t in get_benchmark(bench_name).tasks
                  if t.metadata.name not in names and _has_language(t, config.languages)]
    return names


def _has_language(task: Any, languages: list[str] | None) -> bool:
    """`restrict_languages` without changing the benchmark's (shared) task object."""
    return languages is None or restrict_languages(copy.copy(task), languages)


def _folder_task_name(folder: str) -> str:
    """A folder task's name as its task.yaml gives it (read without loading its tables)."""
    from pathlib import Path

    from harness.yamlio import read_yaml

    meta = read_yaml(Path(folder).expanduser() / "task.yaml", what="task")  # the recipe loader's guards
    return str(meta.get("name") or Path(folder).name)
