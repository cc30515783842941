"""Per-unit scores (per query, per sentence) from mteb's prediction files.

mteb's TaskResult holds only aggregates; paired significance tests need the unit level
(mteb2.md, pitfall 5). Retrieval units are scored with pytrec_eval, the library mteb itself
uses, so their mean equals mteb's aggregate (a test checks it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

UNIT_COLUMNS = ["task", "subset", "split", "unit", "metric", "value"]


def retrieval_units(task_name: str, predictions: dict[str, Any], qrels_by_subset: dict[str, dict[str, Any]],
                    k: int = 10) -> pd.DataFrame:
    import pytrec_eval

    rows: list[tuple[str, str, str, str, str, float]] = []
    for subset, splits in predictions.items():
        if subset == "mteb_model_meta":
            continue
        for split, run in splits.items():
            qrels = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels_by_subset[subset][split].items()}
            run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in qrels}
            evaluator = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}", f"recall.{k}"})
            measured = evaluator.evaluate(run)
            for qid in sorted(qrels):
                m = measured.get(qid, {})
                ranked = sorted(run.get(qid, {}).items(), key=lambda item: (-item[1], item[0]))[:k]
                relevant = {d for d, r in qrels[qid].items() if r > 0}
                rr = next((1.0 / rank for rank, (d, _) in enumerate(ranked, 1) if d in relevant), 0.0)
                rows.append((task_name, subset, split, qid, f"ndcg_at_{k}", m.get(f"ndcg_cut_{k}", 0.0)))
                rows.append((task_name, subset, split, qid, f"recall_at_{k}", m.get(f"recall_{k}", 0.0)))
                rows.append((task_name, subset, split, qid, f"mrr_at_{k}", rr))
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


def bitext_units(task_name: str, predictions: dict[str, Any]) -> pd.DataFrame:
    """A sentence is a hit when its nearest neighbour is its own translation (gold = same index)."""
    rows = []
    for subset, splits in predictions.items():
        if subset == "mteb_model_meta":
            continue
        for split, pairs in splits.items():
            for pair_name, matches in pairs.items():
                for i, match in enumerate(matches):
                    rows.append((task_name, subset, split, f"{pair_name}:{i}", "hit",
                                 float(int(match["corpus_id"]) == i)))
    return pd.DataFrame(rows, columns=UNIT_COLUMNS)


def load_predictions(folder: Path, task_name: str) -> dict[str, Any]:
    return json.loads((folder / f"{task_name}_predictions.json").read_text(encoding="utf-8"))
