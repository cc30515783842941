"""Which per-unit metric tests a task, chosen from that task's own units (never another task's).

One rule per mteb task type (``harness/evaluate/units.py`` says what a unit is); a task whose type or
units give nothing to test gets a reason instead, which the report and significance.json print.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Retrieval-shaped types: per-query metrics; the main metric when it is per query, else these in order.
_PER_QUERY = ("ndcg_at_10", "recall_at_10", "mrr_at_10")
_RETRIEVAL_TYPES = {"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"}

#: Per task type: what the test compares, for the per-type table in the README and report.
TESTED_UNIT: dict[str, str] = {
    "Retrieval": "per query: the main metric (e.g. ndcg_at_10), mean over queries",
    "Reranking": "per query: the main metric when per-query (map_at_1000, ndcg_at_10, ...), else ndcg_at_10",
    "InstructionRetrieval": "per query: ndcg_at_10 (the main score p-MRR is not per query)",
    "InstructionReranking": "per query: ndcg_at_10 (the main score p-MRR is not per query)",
    "Classification": "per test item: `correct` (mean = accuracy; a macro-F1 main score does not decompose)",
    "MultilabelClassification": "per test item: the main metric when per-item (`lrap`, `hamming`), else `correct` "
                                "(exact match; mean = accuracy)",
    "ZeroShotClassification": "per item: `correct` (mean = accuracy)",
    "PairClassification": "per pair: similarity + gold label; statistic = average precision over the pairs "
                          "(bootstrap over pairs)",
    "STS": "per pair: similarity + gold; statistic = Spearman (or Pearson) correlation over the pairs "
           "(bootstrap over pairs)",
    "Clustering": "per clustering experiment (mteb's subsampled cluster sets / bootstrap levels): v_measure; "
                  "mean = the main score. V-measure is a set statistic: no per-item form exists",
    "BitextMining": "per sentence: `hit` (nearest neighbour is its translation; mean = accuracy); the F1 main "
                    "score does not decompose",
    "Summarization": "per source text: the per-text correlation of the main metric (mean = main score)",
    "Regression": "not tested: the kendalltau main score has no per-unit form (per-item squared/absolute "
                  "errors are stored, lower is better)",
}


@dataclass(frozen=True)
class UnitMetric:
    """The per-unit metric that stands for a task's main score, and how its units aggregate."""

    metric: str
    kind: str  # "mean", "spearman", "pearson" or "average_precision"
    gold: str | None = None  # the gold metric (STS "gold", pair classification "label")

    @property
    def label(self) -> str:
        names = {"spearman": "spearman", "pearson": "pearson", "average_precision": "average precision"}
        return self.metric if self.kind == "mean" else f"{self.metric} ({names[self.kind]})"


def choose_unit_metric(task_type: str, main_metric: str, available: set[str]) -> UnitMetric | str:
    """The unit metric for one task from the metrics *its own* units carry; a reason string if none."""
    if not available:
        return "no per-unit scores stored for this task (see its scores.json `units_missing`)"
    if task_type == "STS":
        if {"similarity", "gold"} <= available:
            return UnitMetric("similarity", "pearson" if main_metric.endswith("pearson") else "spearman", "gold")
        return "STS units lack `similarity` and `gold`"
    if task_type == "PairClassification":
        if {"similarity", "label"} <= available:
            return UnitMetric("similarity", "average_precision", "label")
        return "pair units lack `similarity` and `label`"
    if task_type == "Regression":
        return TESTED_UNIT["Regression"]
    if main_metric in available:
        return UnitMetric(main_metric, "mean")
    by_type = {"BitextMining": ("hit",), "Classification": ("correct",), "MultilabelClassification": ("correct",),
               "ZeroShotClassification": ("correct",), "Clustering": ("v_measure",),
               "Summarization": ("cosine_spearman", "spearman")}
    candidates = _PER_QUERY if task_type in _RETRIEVAL_TYPES else by_type.get(task_type, ())
    for metric in candidates:
        if metric in available:
            return UnitMetric(metric, "mean")
    return (f"task type {task_type!r} with main metric {main_metric!r}: none of its unit metrics "
            f"({', '.join(sorted(available))}) stands for it")
