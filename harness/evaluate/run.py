"""Run mteb on one model and one task; return what that task's eval stage stores.

One task per `mteb.evaluate` call, so the caller can commit each task as soon as it is done
(a job killed at task 120 of 131 keeps 119). mteb writes no cache of its own here (`cache=None`):
its TaskResult JSON and model meta are kept in the eval stage instead, where concurrent task
shards never write the same file and `harness export mteb` finds them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.atomic import scratch_dir
from harness.evaluate.units import load_predictions, units_from_predictions

# The metrics kept in scores.json besides the main score (the rest stay in mteb's own JSON).
KEPT_METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "map_at_10", "accuracy", "f1", "precision", "recall")
# File names inside an eval stage (and in results/<recipe>/<variant>/seed-N/mteb/).
MTEB_RESULT = "mteb.json"
MODEL_META = "model_meta.json"


@dataclass
class TaskEvaluation:
    """One task's outcome: harness scores, per-unit scores, and mteb's own files verbatim."""

    scores: dict[str, Any]
    units: pd.DataFrame
    mteb_result: str  # TaskResult JSON exactly as `TaskResult.to_disk` writes it
    model_meta: str  # ModelMeta JSON exactly as `ResultCache.save_to_cache` writes it


def _task_scores(task_result: Any, main_metric: str) -> dict[str, Any]:
    subsets: dict[str, Any] = {}
    for split, entries in task_result.scores.items():
        for entry in entries:
            key = entry["hf_subset"] if len(task_result.scores) == 1 else f"{split}/{entry['hf_subset']}"
            subsets[key] = {m: round(float(entry[m]), 6) for m in ("main_score", *KEPT_METRICS) if m in entry}
    main = sum(s["main_score"] for s in subsets.values()) / len(subsets)
    return {"main_metric": main_metric, "main_score": round(main, 6), "subsets": subsets}


def evaluate_task(encoder: Any, task: Any) -> TaskEvaluation:
    """Evaluate `task` with `mteb.evaluate`; per-unit scores come from mteb's prediction file."""
    import mteb

    name = task.metadata.name
    with scratch_dir("harness-pred") as pred_dir:  # under the cache; a killed run's is removed next time
        result = mteb.evaluate(encoder, [task], cache=None, overwrite_strategy="always", prediction_folder=pred_dir,
                               show_progress_bar=False)
        if result.exceptions:  # raise_error=True makes this unreachable today; kept so a failure is never silent
            raise RuntimeError(f"mteb failed on {name}: {result.exceptions[0].exception}")
        (task_result,) = result.task_results
        units, reason = units_from_predictions(task, load_predictions(Path(pred_dir), name), task_result)
        raw = Path(pred_dir) / MTEB_RESULT
        task_result.to_disk(raw)  # mteb's own writer: the same bytes its ResultCache would hold
        mteb_result = raw.read_text(encoding="utf-8")
    scores = {"type": task.metadata.type, "revision": task.metadata.dataset["revision"],
              **_task_scores(task_result, task.metadata.main_score)}
    if reason:
        scores["units_missing"] = reason
    meta = encoder.mteb_model_meta
    return TaskEvaluation(scores=scores, units=units, mteb_result=mteb_result,
                          model_meta=json.dumps(meta.to_dict(), default=str, indent=4))
