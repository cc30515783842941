"""MTEB-leaderboard aggregates, shared by the report and the leaderboard: Mean(Task), Mean(TaskType), Borda.

One rule for missing tasks everywhere (``MISSING_RULE``): a mean over tasks is only shown for a row
that has every task of its table (no silent averaging over fewer tasks); Borda gives a missing score
0 points, so a row missing a task can still be ranked but never gains from the gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

MISSING_RULE = ("a row missing any task of the table has no Mean(Task) / Mean(TaskType) (–), as on the MTEB "
                "leaderboard; its Borda count gives the missing task 0 points")


def mean_task_type_and_borda(scores: pd.DataFrame, task_types: Mapping[str, str]) -> pd.DataFrame:
    """MTEB-leaderboard aggregates: one row per model (index), sorted by Borda rank.

    Columns: one per task type (mean of that type's tasks), "Mean (Task)", "Mean (TaskType)" (mean of
    the per-type means), "Borda count", "Rank (Borda)". Matches mteb 2.x
    (``mteb/benchmarks/_create_table.py``: ``_get_borda_rank`` and ``_skipna_false_mean``):
    - per task, models are ranked by score, highest = 1, ties get the average rank; a model earns
      (#models - rank) points per task; a missing score earns 0 points;
    - the overall rank orders Borda counts descending, ties share the best rank ("min");
    - means are NaN when any of their inputs is missing (no silent averaging over fewer tasks).
    """
    import pandas as pd

    if scores.empty:
        raise ValueError("mean_task_type_and_borda: empty score table (rows = models, columns = tasks)")
    untyped = [t for t in scores.columns if t not in task_types]
    if untyped:
        raise ValueError(f"no task type given for task(s) {untyped}; pass task_types[task] = e.g. 'Retrieval'")
    table = scores.astype(float)
    types = sorted({task_types[t] for t in table.columns})
    out = pd.DataFrame(index=table.index)
    for task_type in types:
        columns = [t for t in table.columns if task_types[t] == task_type]
        out[task_type] = table[columns].mean(axis=1, skipna=False)
    out["Mean (Task)"] = table.mean(axis=1, skipna=False)
    out["Mean (TaskType)"] = out[types].mean(axis=1, skipna=False)
    ranks = table.rank(axis=0, method="average", ascending=False, na_option="keep")
    out["Borda count"] = (len(table) - ranks).sum(axis=1, skipna=True)
    out["Rank (Borda)"] = out["Borda count"].rank(method="min", ascending=False).astype(int)
    return out.sort_values("Rank (Borda)", kind="stable")
