"""The harness's own mteb tasks, built from the offline suite's *test* splits.

Each task is a small mteb task class (metadata + a loader that builds `datasets` objects in
memory), created per call so its `dataset.revision` is the hash of the data it loads: mteb's
result cache can then never serve a score computed on other data (mteb2.md, pitfall 2).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from harness.data.offline.table_matching import COLUMN_MATCHING, TUPLE_MATCHING
from harness.errors import HarnessError
from harness.evaluate.suite_tasks import SUITE_TASKS
from harness.evaluate.table_tasks import TABLE_TASKS, build_table_task
from harness.evaluate.task_common import GENERAL_METADATA, RETRIEVAL_K_VALUES, HarnessTask
from harness.hashing import content_hash
from harness.instructions import CODE_RETRIEVAL

@lru_cache(maxsize=None)
def _code_retrieval_data() -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, dict[str, int]]]:
    from harness.data.offline.stdlib_code import stdlib_code_pairs

    pairs = stdlib_code_pairs("test")
    queries = [{"id": f"q:{p.id}", "text": p.query} for p in pairs]
    corpus = [{"id": f"d:{p.id}", "text": p.code, "title": ""} for p in pairs]
    qrels = {f"q:{p.id}": {f"d:{p.id}": 1} for p in pairs}
    return queries, corpus, qrels


def build_code_retrieval() -> Any:
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    queries, corpus, qrels = _code_retrieval_data()
    revision = content_hash([queries, corpus, qrels])

    class HarnessCodeRetrieval(AbsTaskRetrieval):
        k_values = RETRIEVAL_K_VALUES
        metadata = TaskMetadata(
            name="HarnessCodeRetrieval",
            description="Python standard-library docstring (first paragraph) -> function body; test modules only.",
            reference="https://docs.python.org/3/library/",
            dataset={"path": "harness/stdlib-code", "revision": revision},
            type="Retrieval",
            eval_langs=["eng-Latn", "python-Code"],
            main_score="ndcg_at_10",
            domains=["Programming", "Written"],
            license="https://docs.python.org/3/license.html",
            **GENERAL_METADATA,
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = {"default": {"test": RetrievalSplitData(
                queries=Dataset.from_list(queries), corpus=Dataset.from_list(corpus),
                relevant_docs=qrels, top_ranked=None)}}
            self.data_loaded = True

    return HarnessCodeRetrieval()


def build_cldr_bitext() -> Any:
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining

    from harness.data.offline.cldr_bitext import DEFAULT_LANGS, LANG_TO_MTEB, cldr_bitext

    data = cldr_bitext("test", DEFAULT_LANGS)
    subsets = {
        f"eng-{LANG_TO_MTEB[lang].split('-')[0]}": (lang, [(p.english, p.other) for p in pairs])
        for lang, pairs in sorted(data.items()) if pairs
    }
    revision = content_hash({k: v[1] for k, v in subsets.items()})

    class HarnessCLDRBitextMining(AbsTaskBitextMining):
        metadata = TaskMetadata(
            name="HarnessCLDRBitextMining",
            description="CLDR (babel) names of territories, languages, currencies and months: English vs 19 "
                        "languages incl. AfriMTEB-Lite's; held-out item keys only.",
            reference="https://cldr.unicode.org/",
            dataset={"path": "harness/cldr-bitext", "revision": revision},
            type="BitextMining",
            eval_langs={name: ["eng-Latn", LANG_TO_MTEB[lang]] for name, (lang, _) in subsets.items()},
            main_score="f1",
            domains=["Written"],
            license="https://www.unicode.org/license.txt",
            **GENERAL_METADATA,
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = {
                name: DatasetDict({"test": Dataset.from_dict({
                    "sentence1": [a for a, _ in pairs], "sentence2": [b for _, b in pairs]})})
                for name, (_, pairs) in subsets.items()
            }
            self.data_loaded = True

    return HarnessCLDRBitextMining()


REGISTRY: dict[str, HarnessTask] = {
    "HarnessCodeRetrieval": HarnessTask(
        "HarnessCodeRetrieval", "Retrieval", build_code_retrieval, CODE_RETRIEVAL,
        "stdlib docstring -> function (code retrieval)"),
    "HarnessCLDRBitextMining": HarnessTask(
        "HarnessCLDRBitextMining", "BitextMining", build_cldr_bitext, None,
        "CLDR names, English vs 19 languages (bitext mining)"),
}


def _table_entries() -> dict[str, HarnessTask]:
    described = {
        "HarnessFEBRLTupleMatching": ("FEBRL4 person records: file A record -> its duplicate in file B "
                                      "(tuple matching)", TUPLE_MATCHING),
        "HarnessValentineColumnMatching": ("columns of real tables -> their perturbed copies, Valentine-style "
                                           "(column matching)", COLUMN_MATCHING),
    }
    return {name: HarnessTask(name, "Retrieval", (lambda make=make: build_table_task(make())),
                              described[name][1], described[name][0])
            for name, make in TABLE_TASKS.items()}


REGISTRY.update(_table_entries())
REGISTRY.update(SUITE_TASKS)
# Instructions of tasks built from a user's folder (table-matching format), by task name.
_FOLDER_INSTRUCTIONS: dict[str, str] = {}


def is_task_folder(name: str) -> bool:
    from pathlib import Path

    return (Path(name).expanduser() / "task.yaml").is_file()


def get_task(name: str) -> Any:
    """Build a harness task by name, or a table-matching task from a folder (docs/table-matching.md)."""
    if is_task_folder(name):
        from harness.data.offline.table_folder import load_table_task

        data = load_table_task(name)
        _FOLDER_INSTRUCTIONS[data.name] = data.instruction
        return build_table_task(data)
    if name not in REGISTRY:
        raise HarnessError(f"unknown task {name!r}; harness tasks: {', '.join(sorted(REGISTRY))}")
    if name not in _BUILT:
        _BUILT[name] = REGISTRY[name].build()
    # A shallow copy per caller: building takes seconds (every variant of a recipe resolves its
    # tasks), and what callers change on a task — `hf_subsets` (eval.languages), the loaded
    # `dataset` — is reassigned on the copy, never mutated in the shared original.
    return copy.copy(_BUILT[name])


_BUILT: dict[str, Any] = {}  # registry tasks built in this process, by name (their data is fixed)


def task_instruction(task_name: str) -> str | None:
    entry = REGISTRY.get(task_name)
    return entry.instruction if entry else _FOLDER_INSTRUCTIONS.get(task_name)
