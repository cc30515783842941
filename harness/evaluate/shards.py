"""Split a run's evaluation tasks into N shards of similar size, by a stable rule.

Size = evaluation samples: for mteb's tasks, `metadata.n_samples` of the task's eval splits (from
mteb's descriptive statistics, shipped with the package: no download); for the harness's own tasks,
the rows of their in-memory data. Tasks are placed largest first (ties by name) into the shard with
the smallest total so far (ties by shard index): the same tasks always give the same shards, so a
rerun submits the same shard for the same tasks. Which shard a task lands in never changes its
eval stage's hash: the cache is per task.
"""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError


def _rows(data: Any) -> int:
    """Rows of a task's loaded data: nested dicts (mteb's RetrievalSplitData is one) of `datasets.Dataset`."""
    if isinstance(data, dict):
        return sum(_rows(v) for v in data.values())
    if hasattr(data, "num_rows"):  # datasets.Dataset
        return int(data.num_rows)
    if hasattr(data, "items"):  # DatasetDict and other mappings
        return sum(_rows(v) for _, v in data.items())
    return 0


def task_size(task: Any) -> int:
    """Samples the task evaluates: mteb's statistics, or the harness task's own rows."""
    from harness.evaluate.resolve import is_local

    if is_local(task):
        if not getattr(task, "data_loaded", False):
            task.load_data()
        return _rows(task.dataset)
    counts = task.metadata.n_samples or {}
    return int(sum(counts.get(split, 0) for split in task.metadata.eval_splits))


def split_tasks(sizes: dict[str, int], n_shards: int) -> list[list[str]]:
    """At most `n_shards` non-empty shards (fewer when there are fewer tasks), each in the run's task order."""
    if n_shards < 1:
        raise HarnessError(f"--eval-shards must be at least 1, got {n_shards}")
    order = {name: i for i, name in enumerate(sizes)}
    n = min(n_shards, len(sizes))
    shards: list[list[str]] = [[] for _ in range(n)]
    totals = [0] * n
    for name in sorted(sizes, key=lambda t: (-sizes[t], t)):
        k = min(range(n), key=lambda i: (totals[i], i))
        shards[k].append(name)
        totals[k] += sizes[name]
    return [sorted(shard, key=order.__getitem__) for shard in shards]


def shards_text(plans: list[Any], tasks: dict[str, tuple[Any, str]], n_shards: int) -> str:
    """The evaluation shards `ablate --eval-shards N` would submit, for --dry-run."""
    sizes = {name: task_size(task) for name, (task, _) in tasks.items()}
    lines = ["", f"evaluation shards (--eval-shards {n_shards}, by task size):"]
    for p in plans:
        split = split_tasks({t: sizes[t] for t in p.evals}, n_shards)
        lines.append(f"  {p.variant.name}  [seed {p.seed}]")
        for k, shard in enumerate(split, start=1):
            done = sum(p.evals[t].done() for t in shard)
            lines.append(f"    shard {k}/{len(split)}: {sum(sizes[t] for t in shard)} samples, "
                         f"{done}/{len(shard)} cached: {', '.join(shard)}")
    return "\n".join(lines)
