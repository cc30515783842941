"""Table matching (column matching, tuple matching) as mteb retrieval tasks.

One task class per call, like harness/evaluate/tasks.py: its `dataset.revision` is the content
hash of the data it loads, so mteb's result cache can never serve a score computed on other
data (another sample seed, another user folder, a new CLDR release...).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.data.offline.febrl import febrl_tuple_matching
from harness.data.offline.table_folder import load_table_task
from harness.data.offline.table_matching import TableMatchingData
from harness.data.offline.valentine import valentine_column_matching
from harness.evaluate.task_common import RETRIEVAL_K_VALUES

MAIN_SCORE = "recall_at_10"

_METADATA: dict[str, Any] = {
    "category": "t2t",
    "type": "Retrieval",
    "eval_splits": ["test"],
    "eval_langs": ["eng-Latn"],
    "main_score": MAIN_SCORE,
    "date": ("2001-01-01", "2026-01-01"),
    "domains": ["Written"],
    "dialect": [],
    "task_subtypes": [],
    "annotations_creators": "derived",
    "sample_creation": "found",
    "modalities": ["text"],
    "bibtex_citation": "",
}


def build_table_task(data: TableMatchingData, *, reference: str | None = None) -> Any:
    """An mteb `AbsTaskRetrieval` over `data`: queries -> corpus, qrels as relevance."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    queries = [{"id": qid, "text": text} for qid, text in data.queries]
    corpus = [{"id": cid, "text": text, "title": ""} for cid, text in data.corpus]
    qrels = {qid: dict(docs) for qid, docs in data.qrels.items()}
    metadata = TaskMetadata(
        name=data.name,
        description=data.description or f"{data.kind} matching",
        reference=reference,
        dataset={"path": f"harness/table-matching/{data.name}", "revision": data.fingerprint()},
        license="not specified",
        **_METADATA,
    )

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = {"default": {"test": RetrievalSplitData(
            queries=Dataset.from_list(queries), corpus=Dataset.from_list(corpus),
            relevant_docs=qrels, top_ranked=None)}}
        self.data_loaded = True

    task_class = type(data.name, (AbsTaskRetrieval,), {"metadata": metadata, "load_data": load_data,
                                                        "k_values": RETRIEVAL_K_VALUES})
    return task_class()


def table_task_from_folder(folder: str | Path) -> Any:
    """A user's table-matching corpus (docs/table-matching.md) as an mteb task, by path alone."""
    return build_table_task(load_table_task(folder))


TABLE_TASKS: dict[str, Callable[[], TableMatchingData]] = {
    "HarnessFEBRLTupleMatching": lambda: febrl_tuple_matching("test"),
    "HarnessValentineColumnMatching": lambda: valentine_column_matching("test"),
}
