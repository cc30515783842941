"""The offline suite's non-retrieval task types (issue 20, point 5): held-out data, labels taken from
the data's own structure, the sizes docs/offline-suite.md states, the benchmarks that name them, and
one real mteb run with per-unit scores for every new type."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.config import EvalConfig
from harness.data.offline import cldr_bitext, stdlib_code
from harness.data.offline.cldr_territories import continent_of, territory_names
from harness.data.offline.febrl import FEBRL_COLUMNS, PAIRS_PER_KIND, febrl_split_of, record_pairs
from harness.data.offline.stdlib_labels import RERANK_CANDIDATES, code_reranking, docstring_classification, package_of
from harness.evaluate.benchmarks import HARNESS_BENCHMARKS, OFFLINE_TASKS, benchmark_names
from harness.evaluate.resolve import resolve_tasks, task_names
from harness.evaluate.suite_tasks import SUITE_TASKS
from harness.evaluate.tasks import REGISTRY

from .conftest import REPO

NEW_TYPES = {"Classification", "Clustering", "PairClassification", "Reranking", "STS"}


def test_every_mteb_task_type_of_the_suite_is_registered() -> None:
    assert {entry.task_type for entry in SUITE_TASKS.values()} == NEW_TYPES
    assert set(OFFLINE_TASKS) == set(REGISTRY)  # the full benchmark is every harness task
    types = {REGISTRY[name].task_type for name in HARNESS_BENCHMARKS["Harness(offline, v1, lite)"]}
    assert types == NEW_TYPES | {"Retrieval", "BitextMining"}  # the lite cut keeps every type
    assert set(HARNESS_BENCHMARKS) <= set(benchmark_names())


def test_docstring_classification_is_held_out_and_labelled_by_package() -> None:
    halves = docstring_classification()
    by_id = {p.id: p for p in stdlib_code.all_stdlib_code_pairs()}
    for half, items in halves.items():
        for item in items:
            pair = by_id[item.id]
            assert stdlib_code.split_of(pair.module) == "test", item.id  # never in the stdlib-code source
            assert (item.text, item.label) == (pair.query, package_of(pair.module))
    assert not {x.id for x in halves["train"]} & {x.id for x in halves["test"]}
    assert {x.label for x in halves["train"]} == {x.label for x in halves["test"]}
    per_label = Counter(x.label for h in halves.values() for x in h).values()
    assert min(per_label) >= 16 and max(per_label) <= 32


def test_code_reranking_candidates_are_the_module_siblings() -> None:
    queries, corpus = code_reranking()
    module_of = {f"d:{p.id}": p.module for p in stdlib_code.all_stdlib_code_pairs()}
    for query in queries:
        assert len(query.candidates) == RERANK_CANDIDATES and query.positive in query.candidates
        assert {module_of[c] for c in query.candidates} == {module_of[query.positive]}
        assert stdlib_code.split_of(module_of[query.positive]) == "test"
    assert set(corpus) == {c for q in queries for c in q.candidates}


def test_territory_clustering_labels_and_split() -> None:
    names = territory_names("test")
    assert {n.continent for n in names} == {"Africa", "Americas", "Asia", "Europe", "Oceania"}
    assert all(cldr_bitext.split_of(f"territory:{n.territory}") == "test" for n in names)
    assert len({n.name for n in names}) == len(names)  # one label per text
    assert (continent_of("NG"), continent_of("FR"), continent_of("BR"), continent_of("AU")) == (
        "Africa", "Europe", "Americas", "Oceania")
    assert not {n.territory for n in names} & {n.territory for n in territory_names("train")}


@pytest.mark.parametrize("dataset", ["febrl2", "febrl3"])
def test_febrl_record_pairs_labels_come_from_links_and_fields(dataset: str) -> None:
    pairs = record_pairs(dataset, "test")
    assert Counter(p.label for p in pairs) == {0: 2 * PAIRS_PER_KIND, 1: PAIRS_PER_KIND}

    def fields(text: str) -> dict[str, str]:
        return dict(part.split(": ", 1) for part in text.split("; "))

    for pair in pairs:
        a, b = fields(pair.a), fields(pair.b)
        assert set(a) <= set(FEBRL_COLUMNS)
        assert pair.matching_fields == sum(1 for c in FEBRL_COLUMNS if a.get(c) and a.get(c) == b.get(c))
    assert max(p.matching_fields for p in pairs if p.label == 0) < len(FEBRL_COLUMNS)
    train_texts = {t for p in record_pairs(dataset, "train") for t in (p.a, p.b)}
    assert not train_texts & {t for p in pairs for t in (p.a, p.b)}
    assert febrl_split_of("rec-1-org") in ("train", "test")


def _documented_sizes() -> dict[str, str]:
    text = (REPO / "docs" / "offline-suite.md").read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| (Harness\w+) \|(?:[^|]*\|){4} ([^|]*) \|", text, re.M)}


def test_data_card_sizes_are_true() -> None:
    sizes = _documented_sizes()
    assert set(sizes) == set(OFFLINE_TASKS)
    halves = docstring_classification()
    labels = len({x.label for x in halves["test"]})
    assert sizes["HarnessDocstringClassification"] == (
        f"{labels} labels; classifier train {len(halves['train'])}, test {len(halves['test'])} docstrings")
    queries, corpus = code_reranking()
    assert sizes["HarnessCodeReranking"].startswith(f"{len(queries)} queries × {RERANK_CANDIDATES} candidates")
    assert sizes["HarnessCodeReranking"].endswith(f"{len(corpus)} functions")
    names = territory_names("test")
    assert sizes["HarnessCLDRTerritoryClustering"].startswith(
        f"{len(names)} names of {len({n.territory for n in names})} territories")
    for task, dataset in (("HarnessFEBRLPairClassification", "febrl3"), ("HarnessFEBRLRecordSTS", "febrl2")):
        pairs = record_pairs(dataset, "test")
        records = len({t for p in pairs for t in (p.a, p.b)})
        assert sizes[task].startswith(f"{len(pairs)} pairs") and sizes[task].endswith(f"{records} records")


def test_benchmark_names_resolve_to_the_harness_tasks() -> None:
    lite = "Harness(offline, v1, lite)"
    config = EvalConfig(tasks=[], benchmarks=[lite])
    assert task_names(config) == list(HARNESS_BENCHMARKS[lite])  # without building any task
    restricted = EvalConfig(tasks=[], benchmarks=[lite], languages=["amh", "hau"])
    tasks = resolve_tasks(restricted)
    assert list(tasks) == task_names(restricted) == list(HARNESS_BENCHMARKS[lite])
    assert sorted(tasks["HarnessCLDRBitextMining"].hf_subsets) == ["eng-amh", "eng-hau"]
    for name, task in tasks.items():
        assert task.metadata.type == REGISTRY[name].task_type
        assert str(task.metadata.dataset["path"]).startswith("harness/")


@pytest.fixture(scope="module")
def minilm() -> Any:
    from harness.config import ModelConfig
    from harness.model import Embedder

    return Embedder.from_config(ModelConfig(backbone="minilm", query_max_length=40, passage_max_length=32)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SUITE_TASKS))  # one test per task: the workers share them out
def test_minilm_scores_every_new_type_with_units(minilm: Any, name: str) -> None:
    """One real mteb run per new task: main score in range, per-unit scores that aggregate to it."""
    from harness.evaluate.encoder import HarnessEncoder
    from harness.evaluate.run import evaluate_task
    from harness.evaluate.tasks import get_task

    expected_units = {"Classification": "correct", "Clustering": "v_measure", "PairClassification": "similarity",
                      "Reranking": "map_at_1000", "STS": "similarity"}
    entry = SUITE_TASKS[name]
    encoder = HarnessEncoder(minilm, name="test/minilm", revision="test", show_progress=False)
    result = evaluate_task(encoder, get_task(name))
    assert "units_missing" not in result.scores, name
    main = result.scores["main_score"]
    assert 0.2 < main <= 1.0, (name, main)  # minilm is far above chance on each
    units = result.units[result.units["metric"] == expected_units[entry.task_type]]
    assert len(units) >= 20, name
    if entry.task_type in ("Classification", "Clustering", "Reranking"):  # decomposes over units
        assert units["value"].mean() == pytest.approx(main, abs=1e-4), name


def test_no_new_task_shares_a_text_with_the_offline_training_sources() -> None:
    """Held out for real: no eval text of the new tasks is (after normalisation) a training text of
    stdlib-code, cldr-bitext, febrl-tuples, febrl-pairs or table-columns."""
    from harness.config import SourceConfig
    from harness.data.contamination import contamination_report
    from harness.data.mix import read_source
    from harness.evaluate.tasks import get_task

    texts = [text for kind in ("stdlib-code", "cldr-bitext", "febrl-tuples", "febrl-pairs", "table-columns")
             for row in read_source(kind, SourceConfig(kind=kind)) for text in (row.query, *row.pos, *row.neg)]
    report = contamination_report(texts, {name: get_task(name) for name in SUITE_TASKS}, near_duplicates=False)
    assert {name: r["exact"]["distinct"] for name, r in report["tasks"].items()} == dict.fromkeys(SUITE_TASKS, 0)
