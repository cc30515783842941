"""Turn a variant's `eval` section into task objects: harness tasks, mteb tasks, mteb benchmarks."""

from __future__ import annotations

from typing import Any

from harness.config import EvalConfig


def is_local(task: Any) -> bool:
    """Harness-built tasks carry their data in memory; mteb's own tasks live on the Hub."""
    return str(task.metadata.dataset.get("path", "")).startswith("harness/")


def resolve_tasks(config: EvalConfig) -> dict[str, Any]:
    """Task name -> task object, in a stable order: named tasks first, then benchmark tasks."""
    from harness.evaluate.tasks import REGISTRY, get_task, is_task_folder

    tasks: dict[str, Any] = {}
    for name in config.tasks:
        if name in REGISTRY or is_task_folder(name):
            task = get_task(name)
            tasks[task.metadata.name] = task
        else:
            from harness.evaluate.benchmarks import get_mteb_task

            tasks[name] = get_mteb_task(name)
    for bench_name in config.benchmarks:
        from harness.evaluate.benchmarks import get_benchmark

        for task in get_benchmark(bench_name).tasks:
            tasks.setdefault(task.metadata.name, task)
    return tasks


def check_names(config: EvalConfig) -> None:
    """Validate names against local metadata only (mteb is imported only for non-harness names)."""
    from harness.evaluate.tasks import REGISTRY, is_task_folder

    foreign = [n for n in config.tasks if n not in REGISTRY and not is_task_folder(n)]
    if not foreign and not config.benchmarks:
        return
    from harness.errors import HarnessError
    from harness.evaluate.benchmarks import get_benchmark, get_mteb_task

    for name in foreign:
        if name.startswith((".", "/", "~")) or "/" in name:  # a path, never an mteb task name
            raise HarnessError(f"no such task folder {name!r} (a table-matching task folder holds task.yaml)")
        get_mteb_task(name)
    for name in config.benchmarks:
        get_benchmark(name)


def task_names(config: EvalConfig) -> list[str]:
    """The names `resolve_tasks` would return, without building any task's data."""
    from harness.evaluate.tasks import is_task_folder

    names = [_folder_task_name(n) if is_task_folder(n) else n for n in dict.fromkeys(config.tasks)]
    for bench_name in config.benchmarks:
        from harness.evaluate.benchmarks import get_benchmark

        names += [t.metadata.name for t in get_benchmark(bench_name).tasks if t.metadata.name not in names]
    return names


def _folder_task_name(folder: str) -> str:
    """A folder task's name as its task.yaml gives it (read without loading its tables)."""
    from pathlib import Path

    import yaml

    meta = yaml.safe_load((Path(folder).expanduser() / "task.yaml").read_text(encoding="utf-8")) or {}
    return str(meta.get("name") or Path(folder).name)
