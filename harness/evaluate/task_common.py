"""What every harness-built mteb task shares: metadata defaults, retrieval k values, the registry
entry type and the one way a task class is made from in-memory data.

Each task is a class created per call, so its `dataset.revision` is the content hash of the data
it loads: mteb's result cache can never serve a score computed on other data (mteb2.md, pitfall 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GENERAL_METADATA: dict[str, Any] = {
    "category": "t2t",
    "eval_splits": ["test"],
    "date": ("2001-01-01", "2026-01-01"),
    "dialect": ["Written"],
    "task_subtypes": [],
    "annotations_creators": "derived",
    "modalities": ["text"],
    "sample_creation": "found",
    "bibtex_citation": "",
}

# mteb's default adds @1000, which makes it keep (and write to the prediction file) the top 1000
# documents of every query: ~1M scores as JSON per task here, most of an eval's time for a small
# model. The harness reads @10 per query (units.py) and the corpora are ~1000 documents.
RETRIEVAL_K_VALUES = (1, 3, 5, 10, 20, 100)


@dataclass(frozen=True)
class HarnessTask:
    """A registry entry: how to build the task, and its query-side instruction (if any)."""

    name: str
    task_type: str
    build: Callable[[], Any]
    instruction: str | None
    description: str


def make_task(base: type, name: str, revision: str, load: Callable[[], Any], *, path: str, description: str,
              reference: str | None, license: str, eval_langs: Any, main_score: str, task_type: str,
              domains: list[str], **attributes: Any) -> Any:
    """An instance of a new `base` subclass named `name` whose `load_data` sets `dataset = load()`.

    `revision` is the content hash of everything a score depends on (`content_hash(data)`).
    """
    from mteb.abstasks.task_metadata import TaskMetadata

    metadata = TaskMetadata(
        name=name, description=description, reference=reference,
        dataset={"path": path, "revision": revision}, type=task_type, eval_langs=eval_langs,
        main_score=main_score, domains=domains, license=license, **GENERAL_METADATA)

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = load()
        self.data_loaded = True

    return type(name, (base,), {"metadata": metadata, "load_data": load_data, **attributes})()


def retrieval_dataset(queries: list[dict[str, str]], corpus: list[dict[str, str]],
                      qrels: dict[str, dict[str, int]], top_ranked: dict[str, list[str]] | None = None) -> Any:
    """mteb's retrieval layout for one monolingual test split (reranking: with `top_ranked`)."""
    from datasets import Dataset
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    return {"default": {"test": RetrievalSplitData(
        queries=Dataset.from_list(queries), corpus=Dataset.from_list(corpus), relevant_docs=qrels,
        top_ranked=top_ranked)}}
