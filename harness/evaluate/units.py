"""Per-unit scores (per query, sentence, pair, item, experiment) for every mteb task type we run.

Paired significance tests need one number per unit (pair, item, query, experiment) for both
models; mteb's TaskResult holds only aggregates. Each extractor here reads what mteb itself
saved in `<Task>_predictions.json` (mteb 2.26) and joins it with the gold side of the task's own
data (reloaded when mteb has unloaded it), never re-encoding anything. Where the task's main
score decomposes over units, the units aggregate back to it exactly (tests check this); where
it doesn't (macro-F1, Kendall tau, AP, correlations), the units are the inputs a bootstrap needs.
See `UNIT_TYPES` for what a unit is per type, and where the numbers come from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

UNIT_COLUMNS = ["task", "subset", "split", "unit", "metric", "value"]

UNIT_TYPES: dict[str, str] = {
    "Retrieval": "unit = query. ndcg_at_10, recall_at_10, mrr_at_10 (+ the main metric) per query with "
                 "pytrec_eval on mteb's saved top-k, as mteb scores it (ties, empty qrels, identical ids).",
    "BitextMining": "unit = sentence1 item. 'hit' = its nearest sentence2 is its own translation; "
                    "mean = accuracy (F1 does not decompose).",
    "STS": "unit = sentence pair (row index). 'similarity' = the model's score that mteb's main "
           "score correlates (cosine_scores for cosine_*, similarity_scores for pearson/spearman, "
           "negated distances for manhattan_*/euclidean_*), from the prediction file; 'gold' = the "
           "task's score normalised to [0, 1] as mteb does. Spearman/Pearson over the units "
           "equals mteb's main score.",
    "Classification": "unit = test item (row index of the eval split). 'correct' = fraction of "
                      "mteb's n_experiments (different sampled train sets, same test set) whose "
                      "classifier predicted the gold label; predictions from the prediction file, "
                      "gold from the task data. Mean over units = mteb's accuracy. Cross-validation "
                      "tasks: unit = row of the single split, scored in the one fold that held it "
                      "out (folds rebuilt with mteb's KFold seed). Macro-F1 main scores do not "
                      "decompose over items.",
    "PairClassification": "unit = pair (row index). 'similarity' = the scores of the scoring "
                          "function behind mteb's main score (for max_*: the one that reached the "
                          "max, first in mteb's order on ties), oriented so higher = more similar; "
                          "'label' = gold 0/1. average_precision_score(label, similarity) equals "
                          "mteb's *_ap.",
    "Clustering": "unit = one clustering experiment (legacy: one cluster set; fast: one bootstrap "
                  "sample per hierarchy level, unit 'Level 0/3'). 'v_measure' (and 'ami' for the "
                  "fast variant) taken from the TaskResult's per-experiment lists: mteb saves only "
                  "cluster assignments per experiment, and the per-item score does not exist. Mean "
                  "over units = mteb's v_measure.",
    "Reranking": "unit = query. ndcg_at_10, recall_at_10, mrr_at_10 and the main metric (e.g. "
                 "map_at_1000) per query with pytrec_eval, as mteb computes them (same filtering "
                 "of queries without positives, ignore_identical_ids, skip_first_result, MRR "
                 "tie-break); run from the prediction file, qrels from the task data. Mean over "
                 "units = mteb's score (mteb rounds to 5 decimals). Task-specific main scores "
                 "(p-MRR, accuracy, max_over_subqueries_*) are not per query.",
    "InstructionRetrieval": "as Reranking (per query, standard metrics); the main score p-MRR / "
                            "robustness_at_10 is not per query.",
    "InstructionReranking": "as Reranking (per query, standard metrics); the main score p-MRR is "
                            "not per query.",
    "MultilabelClassification": "unit = test item (after mteb's own subsampling to "
                                "max_eval_samples, ids = row in the full split). Averaged over "
                                "experiments: 'correct' (exact match; mean = accuracy), 'hamming' "
                                "(per-item Jaccard; mean = hamming), 'lrap' (per-item; mean = lrap; "
                                "omitted when the classifier is a MultiOutputClassifier, whose "
                                "probabilities mteb does not save). Macro-F1 does not decompose.",
    "Summarization": "unit = source text (row index). Per-text Pearson/Spearman between human "
                     "relevance and the max similarity of each machine summary to the human "
                     "summaries, from the prediction file: metrics cosine_spearman, "
                     "cosine_pearson, dot_spearman, dot_pearson, spearman, pearson. Mean = mteb's "
                     "score, except for tasks on mteb's DeprecatedSummarizationEvaluator "
                     "(SummEval v1), whose aggregate averages p-values in too. Texts mteb skipped "
                     "(all-equal scores) have no unit.",
    "Regression": "unit = test item. 'squared_error' and 'abs_error' averaged over experiments "
                  "(means = mteb's mse and mae). The kendalltau main score does not decompose.",
    "ZeroShotClassification": "unit = item. 'correct' = argmax of mteb's saved similarity to the "
                              "candidate labels equals the gold label; mean = accuracy.",
}


def units_from_predictions(task: Any, predictions: dict[str, Any], task_result: Any
                           ) -> tuple[pd.DataFrame, str | None]:
    """Per-unit scores for one evaluated task; an empty frame comes with the reason why."""
    ttype = task.metadata.type
    extractor = _EXTRACTORS.get(ttype)
    if extractor is None:
        return _empty(), (f"task type {ttype!r}: no unit-level extraction (mteb 2.26 saves nothing "
                          f"per unit for it that this module reads); types with units: "
                          f"{', '.join(sorted(_EXTRACTORS))}")
    rows: list[tuple[str, str, str, str, str, float]] = []
    name = task.metadata.name
    if ttype == "Clustering":
        for (subset, split), entry in _result_entries(task_result).items():
            rows += [(name, subset, split, unit, metric, value)
                     for unit, metric, value in _clustering_units(entry)]
    else:
        entries = _result_entries(task_result)
        with _loaded(task):
            for subset, split, saved in _saved_splits(predictions):
                entry = entries.get((subset, split), {})
                rows += [(name, subset, split, unit, metric, float(value))
                         for unit, metric, value in extractor(task, subset, split, saved, entry)]
    frame = pd.DataFrame(rows, columns=UNIT_COLUMNS)
    if frame.empty:
        return frame, f"{name}: the prediction file / TaskResult held no per-unit data for any split"
    return frame, None


# --- shared plumbing -------------------------------------------------------------------------

def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=UNIT_COLUMNS)


def _saved_splits(predictions: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    for subset, splits in predictions.items():
        if subset == "mteb_model_meta":
            continue
        for split, saved in splits.items():
            yield subset, split, saved


def _result_entries(task_result: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(entry["hf_subset"], split): entry
            for split, entries in task_result.scores.items() for entry in entries}


@contextmanager
def _loaded(task: Any) -> Iterator[None]:
    """mteb unloads a task's data after evaluating it; reload it (deterministic, same transforms)
    for the gold side, and unload again if we were the ones who loaded it."""
    was_loaded = task.data_loaded
    if not was_loaded:
        task.load_data()
    try:
        yield
    finally:
        if not was_loaded:
            task.unload_data()


def _subset_data(task: Any, subset: str) -> Any:
    """The per-subset data as `AbsTask.evaluate` picks it (monolingual tasks have no subset level)."""
    if subset == "default" and "default" not in task.dataset:
        return task.dataset
    return task.dataset[subset]


Units = list[tuple[str, str, float]]


# --- STS ---------------------------------------------------------------------------------------

def _sts_scores(saved: dict[str, Any], main_score: str) -> list[float]:
    family = main_score.split("_")[0]
    lists = {"cosine": "cosine_scores", "manhattan": "manhattan_distances",
             "euclidean": "euclidean_distances"}  # STS already saves distances negated
    if family in lists:
        return saved[lists[family]]
    return saved.get("similarity_scores") or saved["cosine_scores"]


def _sts_units(task: Any, subset: str, split: str, saved: dict[str, Any], entry: dict) -> Units:
    data = _subset_data(task, subset)[split]
    gold = [task._normalize(score) for score in data["score"]]
    similarity = _sts_scores(saved, task.metadata.main_score)
    _check_length(task, subset, split, len(similarity), len(gold))
    units: Units = []
    for i, (sim, g) in enumerate(zip(similarity, gold, strict=True)):
        units += [(str(i), "similarity", sim), (str(i), "gold", g)]
    return units


# --- Classification, Regression, ZeroShot --------------------------------------------------------

def _cross_validation_folds(task: Any, n_rows: int) -> list[np.ndarray]:
    from sklearn.model_selection import KFold

    splitter = KFold(n_splits=task.n_splits, shuffle=True, random_state=task.seed)
    return [val_idx for _, val_idx in splitter.split(range(n_rows))]


def _per_item(task: Any, subset: str, split: str, experiments: list[list[Any]]
              ) -> tuple[list[int], list[Any], list[list[Any]]]:
    """(unit ids, gold, per-item predictions across experiments) for the sklearn-experiment types."""
    data = _subset_data(task, subset)
    if getattr(task, "is_cross_validation", False):
        labels = data[task.train_split][task.label_column_name]
        folds = _cross_validation_folds(task, len(labels))
        ids = [int(i) for fold in folds for i in fold]
        preds = [[p] for fold_preds in experiments for p in fold_preds]
        _check_length(task, subset, split, len(preds), len(ids))
        return ids, [labels[i] for i in ids], preds
    gold = list(data[split][task.label_column_name])
    for preds in experiments:
        _check_length(task, subset, split, len(preds), len(gold))
    return list(range(len(gold))), gold, [list(p) for p in zip(*experiments, strict=True)]


def _classification_units(task: Any, subset: str, split: str, saved: list, entry: dict) -> Units:
    ids, gold, preds = _per_item(task, subset, split, saved)
    return [(str(i), "correct", float(np.mean([p == g for p in item_preds])))
            for i, g, item_preds in zip(ids, gold, preds, strict=True)]


def _regression_units(task: Any, subset: str, split: str, saved: list, entry: dict) -> Units:
    ids, gold, preds = _per_item(task, subset, split, saved)
    units: Units = []
    for i, g, item_preds in zip(ids, gold, preds, strict=True):
        errors = np.asarray(item_preds, dtype=float) - float(g)
        units += [(str(i), "squared_error", float(np.mean(errors**2))),
                  (str(i), "abs_error", float(np.mean(np.abs(errors))))]
    return units


def _zeroshot_units(task: Any, subset: str, split: str, saved: list, entry: dict) -> Units:
    data = _subset_data(task, subset)[split]
    gold = task._normalize_labels(data[task.label_column_name], task.get_candidate_labels())
    predicted = np.asarray(saved).argmax(axis=1)
    _check_length(task, subset, split, len(predicted), len(gold))
    return [(str(i), "correct", float(p == g)) for i, (p, g) in enumerate(zip(predicted, gold, strict=True))]


# --- Multilabel ---------------------------------------------------------------------------------

def _multilabel_eval_rows(task: Any, subset: str, split: str) -> tuple[list[int], list[list[Any]]]:
    """Row ids and label lists of the eval rows mteb scored (it subsamples big splits, seeded)."""
    from datasets import DatasetDict

    eval_split = _subset_data(task, subset)[split]
    limit = getattr(task, "max_eval_samples", None)
    if limit is None or len(eval_split) <= limit:
        return list(range(len(eval_split))), list(eval_split[task.label_column_name])
    from mteb.abstasks.abstask import _multilabel_subsampling

    tagged = eval_split.select_columns([task.label_column_name]).add_column("__row__", list(range(len(eval_split))))
    kept = _multilabel_subsampling(DatasetDict({split: tagged}), seed=task.seed, splits=[split],
                                   label=task.label_column_name, n_samples=limit)[split]
    return list(kept["__row__"]), list(kept[task.label_column_name])


def _multilabel_units(task: Any, subset: str, split: str, saved: list, entry: dict) -> Units:
    from sklearn.metrics import label_ranking_average_precision_score
    from sklearn.multioutput import MultiOutputClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    ids, labels = _multilabel_eval_rows(task, subset, split)
    y_true = MultiLabelBinarizer().fit_transform(labels)  # mteb's column order: sorted test labels
    y_pred = np.asarray(saved, dtype=int)  # (experiments, items, labels)
    _check_length(task, subset, split, y_pred.shape[1], len(ids))
    truth, pred = y_true.astype(bool)[None], y_pred.astype(bool)
    exact = (truth == pred).all(axis=2).mean(axis=0)
    union = (truth | pred).sum(axis=2)
    jaccard = np.where(union == 0, 1.0, (truth & pred).sum(axis=2) / np.maximum(union, 1)).mean(axis=0)
    units: Units = []
    for i, row in enumerate(ids):
        units += [(str(row), "correct", exact[i]), (str(row), "hamming", jaccard[i])]
    if not isinstance(task.evaluator_model, MultiOutputClassifier):
        # mteb scored LRAP on the binary predictions; per-item LRAP is sklearn's per-sample term.
        # Memoised on (truth, prediction) because binary rows repeat a lot.
        memo: dict[tuple[bytes, bytes], float] = {}

        def item_lrap(t: np.ndarray, p: np.ndarray) -> float:
            key = (t.tobytes(), p.tobytes())
            if key not in memo:
                memo[key] = float(label_ranking_average_precision_score(t[None], p[None]))
            return memo[key]

        for i, row in enumerate(ids):
            units.append((str(row), "lrap", float(np.mean([item_lrap(y_true[i], exp[i]) for exp in y_pred]))))
    return units


# --- PairClassification -------------------------------------------------------------------------

# mteb's order of scoring functions, their prediction-file keys and whether higher = more similar
_PAIR_FUNCTIONS = [("similarity", "similarity_scores", True), ("cosine", "cosine_scores", True),
                   ("manhattan", "manhattan_distances", False), ("euclidean", "euclidean_distances", False),
                   ("dot", "dot_scores", True)]


def _pair_function(main_score: str, entry: dict[str, Any]) -> tuple[str, bool]:
    """The prediction-file key behind the main score; the model's own similarity otherwise."""
    family, _, base = main_score.partition("_")
    if family == "max" and all(f"{name}_{base}" in entry for name, _, _ in _PAIR_FUNCTIONS):
        best = max(entry[f"{name}_{base}"] for name, _, _ in _PAIR_FUNCTIONS)
        family = next(name for name, _, _ in _PAIR_FUNCTIONS if entry[f"{name}_{base}"] == best)
    return next(((key, up) for name, key, up in _PAIR_FUNCTIONS if name == family), _PAIR_FUNCTIONS[0][1:])


def _pair_units(task: Any, subset: str, split: str, saved: dict[str, Any], entry: dict) -> Units:
    data = _subset_data(task, subset)[split]
    if len(data) == 1:  # mteb v1 layout: one row holding all pairs as lists
        data = data[0]
    labels = list(data[task.label_column_name])
    key, higher_is_similar = _pair_function(task.metadata.main_score, entry)
    similarity = np.asarray(saved[key], dtype=float) * (1.0 if higher_is_similar else -1.0)
    _check_length(task, subset, split, len(similarity), len(labels))
    units: Units = []
    for i, (sim, label) in enumerate(zip(similarity, labels, strict=True)):
        units += [(str(i), "similarity", float(sim)), (str(i), "label", float(label))]
    return units


# --- Clustering ---------------------------------------------------------------------------------

def _clustering_units(entry: dict[str, Any]) -> Units:
    units: Units = []
    for metric, key in (("v_measure", "v_measures"), ("ami", "ami_scores")):
        per_experiment = entry.get(key)
        if isinstance(per_experiment, list):  # legacy: one score per cluster set
            units += [(str(i), metric, float(v)) for i, v in enumerate(per_experiment)]
        elif isinstance(per_experiment, dict):  # fast: {level: [score per bootstrap sample]}
            units += [(f"{level}/{i}", metric, float(v))
                      for level, values in per_experiment.items() for i, v in enumerate(values)]
    return units


# --- Reranking and other retrieval-shaped types -------------------------------------------------

_PYTREC = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P", "hit_rate": "success"}


def _retrieval_metrics(main_score: str) -> list[tuple[str, int]]:
    wanted = [("ndcg", 10), ("recall", 10), ("mrr", 10)]
    family, _, k = main_score.rpartition("_at_")
    if (family in _PYTREC or family == "mrr") and k.isdigit() and (family, int(k)) not in wanted:
        wanted.append((family, int(k)))
    return wanted


def _retrieval_units(task: Any, subset: str, split: str, saved: dict[str, Any], entry: dict) -> Units:
    import pytrec_eval

    qrels = {q: {d: int(r) for d, r in docs.items()}
             for q, docs in task.dataset[subset][split]["relevant_docs"].items() if len(docs) > 0}
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in saved.items()}
    if getattr(task, "ignore_identical_ids", False):
        run = {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}
    if getattr(task, "skip_first_result", False):  # mteb drops each query's top hit (stable sort)
        run = {q: dict(sorted(docs.items(), key=lambda item: item[1], reverse=True)[1:]) for q, docs in run.items()}
    wanted = _retrieval_metrics(task.metadata.main_score)
    measures = {f"{_PYTREC[family]}.{k}" for family, k in wanted if family != "mrr"}
    measured = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    units: Units = []
    for qid in sorted(measured):  # mteb averages over the queries pytrec_eval scored
        # mteb ranks ties by doc id descending to match pytrec_eval (mteb PR #5092)
        ranked = [d for d, _ in sorted(run[qid].items(), key=lambda item: (item[1], item[0]), reverse=True)]
        relevant = {d for d, r in qrels[qid].items() if r > 0}
        for family, k in wanted:
            if family == "mrr":
                value = next((1.0 / rank for rank, d in enumerate(ranked[:k], 1) if d in relevant), 0.0)
            else:
                value = measured[qid][f"{_PYTREC[family]}_{k}"]
            units.append((qid, f"{family}_at_{k}", value))
    return units


# --- Summarization ------------------------------------------------------------------------------

_SUMMARY_METRICS = [("cosine_", "cosine_scores"), ("dot_", "dot_scores"), ("", "similarity_scores")]


def _summarization_units(task: Any, subset: str, split: str, saved: dict[str, Any], entry: dict) -> Units:
    from scipy.stats import pearsonr, spearmanr

    data = _subset_data(task, subset)[split]
    span = task.max_score - task.min_score
    gold = [[(x - task.min_score) / span for x in row] for row in data[task.relevancy_column_name]]
    # mteb drops texts whose scores are all equal without saying which: rows whose gold is constant
    # are always dropped; the rest are matched in order (a model-side tie could shift this, but
    # only when every machine summary gets the very same similarity).
    candidates = [i for i, row in enumerate(gold) if len(set(row)) > 1]
    units: Units = []
    position = 0
    for n, human in enumerate(saved["human_scores"]):
        while position < len(candidates) and not _same_scores(gold[candidates[position]], human):
            position += 1
        if position == len(candidates):
            raise ValueError(f"{task.metadata.name} {subset}/{split}: saved text {n} matches no data row")
        unit = str(candidates[position])
        position += 1
        for prefix, key in _SUMMARY_METRICS:
            predicted = saved[key][n]
            units += [(unit, f"{prefix}spearman", float(spearmanr(human, predicted).statistic)),
                      (unit, f"{prefix}pearson", float(pearsonr(human, predicted).statistic))]
    return units


def _same_scores(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b))


def _check_length(task: Any, subset: str, split: str, saved: int, gold: int) -> None:
    if saved != gold:
        raise ValueError(f"{task.metadata.name} {subset}/{split}: the prediction file has {saved} "
                         f"entries but the task data has {gold}; were they written by another "
                         "version of the task?")


def _bitext_units(task: Any, subset: str, split: str, saved: dict[str, Any], entry: dict) -> Units:
    """A sentence is a hit when its nearest neighbour is its own translation (gold = same index)."""
    return [(f"{pair}:{i}", "hit", float(int(match["corpus_id"]) == i))
            for pair, matches in saved.items() for i, match in enumerate(matches)]


def load_predictions(folder: Path, task_name: str) -> dict[str, Any]:
    return json.loads((folder / f"{task_name}_predictions.json").read_text(encoding="utf-8"))


_EXTRACTORS = {
    "Retrieval": _retrieval_units,
    "BitextMining": _bitext_units,
    "STS": _sts_units,
    "Classification": _classification_units,
    "PairClassification": _pair_units,
    "Clustering": _clustering_units,  # dispatched on the TaskResult, not on predictions
    "Reranking": _retrieval_units,
    "InstructionRetrieval": _retrieval_units,
    "InstructionReranking": _retrieval_units,
    "MultilabelClassification": _multilabel_units,
    "Summarization": _summarization_units,
    "Regression": _regression_units,
    "ZeroShotClassification": _zeroshot_units,
}
