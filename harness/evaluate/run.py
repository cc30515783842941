"""Run mteb on one model and a list of tasks; return aggregate and per-unit scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.atomic import scratch_dir
from harness.evaluate.encoder import HarnessEncoder
from harness.evaluate.units import load_predictions, units_from_predictions
from harness.paths import cache_root

# The metrics kept in scores.json besides the main score (the rest stay in mteb's own JSON).
KEPT_METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "map_at_10", "accuracy", "f1", "precision", "recall")


def _task_scores(task_result: Any, main_metric: str) -> dict[str, Any]:
    subsets: dict[str, Any] = {}
    for split, entries in task_result.scores.items():
        for entry in entries:
            key = entry["hf_subset"] if len(task_result.scores) == 1 else f"{split}/{entry['hf_subset']}"
            subsets[key] = {m: round(float(entry[m]), 6) for m in ("main_score", *KEPT_METRICS) if m in entry}
    main = sum(s["main_score"] for s in subsets.values()) / len(subsets)
    return {"main_metric": main_metric, "main_score": round(main, 6), "subsets": subsets}


def evaluate(encoder: HarnessEncoder, tasks: list[Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """Evaluate with `mteb.evaluate`; results also land in mteb's ResultCache under the cache root."""
    import mteb

    scores: dict[str, Any] = {}
    units: list[pd.DataFrame] = []
    with scratch_dir("harness-pred") as pred_dir:  # under the cache; a killed run's is removed next time
        result = mteb.evaluate(
            encoder, tasks, cache=mteb.ResultCache(cache_root() / "mteb"), overwrite_strategy="always",
            prediction_folder=pred_dir, show_progress_bar=getattr(encoder, "show_progress", True),
        )
        by_name = {t.metadata.name: t for t in tasks}
        for task_result in result.task_results:
            task = by_name[task_result.task_name]
            name, ttype = task.metadata.name, task.metadata.type
            scores[name] = {"type": ttype, "revision": task.metadata.dataset["revision"],
                            **_task_scores(task_result, task.metadata.main_score)}
            frame, reason = units_from_predictions(task, load_predictions(Path(pred_dir), name), task_result)
            units.append(frame)
            if reason:
                scores[name]["units_missing"] = reason
    frame = pd.concat(units, ignore_index=True) if units else pd.DataFrame()
    return scores, frame
