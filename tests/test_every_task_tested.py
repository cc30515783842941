"""Every task is tested or listed (issue 20): a recipe whose tasks mix every mteb task type, evaluated by
the harness's own `evaluate_task` (real mteb runs of mteb's mock tasks and the larger mock subclasses of
test_units, with all-MiniLM-L6-v2 mean-pooled as the control and CLS-pooled as the variant). Each task
gets a per-task test on a unit metric of its own, or a row saying why not — in report.md and in
significance.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.report.report import UNTESTED_KEY, write_report
from harness.report.significance import compare_recipe, load_recipe

from .test_units import _larger_tasks, _minilm_encoder

MOCKS = ["MockRetrievalTask", "MockBitextMiningTask", "MockClusteringTask", "MockInstructionRetrieval",
         "MockInstructionReranking", "MockRegressionTask", "MockTextZeroShotClassificationTask"]
LARGER = ["UnitsLargerSTS", "UnitsLargerPairs", "UnitsLargerClassification", "UnitsLargerMultilabel",
          "UnitsLargerReranking", "UnitsLargerSummarization"]
#: task -> the unit metric its test must use (label as the report prints it)
EXPECTED = {"MockRetrievalTask": "ndcg_at_10", "MockBitextMiningTask": "hit", "MockClusteringTask": "v_measure",
            "MockInstructionRetrieval": "ndcg_at_10", "MockInstructionReranking": "ndcg_at_10",
            "MockTextZeroShotClassification": "correct", "UnitsLargerSTS": "similarity (spearman)",
            "UnitsLargerPairs": "similarity (average precision)", "UnitsLargerClassification": "correct",
            "UnitsLargerMultilabel": "lrap", "UnitsLargerReranking": "map_at_1000",
            "UnitsLargerSummarization": "cosine_spearman"}
UNTESTED = {"MockRegressionTask": "kendalltau"}


def _cls_encoder() -> Any:
    """The same MiniLM with CLS pooling: a genuinely different model on the same tasks."""
    import torch

    base = _minilm_encoder()

    class CLSMiniLM(type(base)):  # type: ignore[misc]
        @torch.no_grad()
        def encode(self, inputs: Any, **kwargs: Any) -> Any:
            texts = [text for batch in inputs for text in batch["text"]]
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            pooled = self.model(**batch).last_hidden_state[:, 0]
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    return CLSMiniLM()


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mteb.mocks
    import pandas as pd
    import torch

    from harness.evaluate.run import evaluate_task

    folder = tmp_path_factory.mktemp("results") / "mixed"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for variant, encoder in (("base", _minilm_encoder()), ("cls_pooling", _cls_encoder())):
            tasks = [getattr(mteb.mocks, name)() for name in MOCKS]
            tasks += [t for t in _larger_tasks() if t.metadata.name in LARGER]
            run = folder / variant / "seed-0"
            run.mkdir(parents=True)
            scores, units = {}, []
            for task in tasks:
                evaluation = evaluate_task(encoder, task)
                scores[task.metadata.name] = evaluation.scores
                units.append(evaluation.units)
            (run / "scores.json").write_text(json.dumps({"model_name": variant, "seed": 0, "tasks": scores}))
            pd.concat(units).to_parquet(run / "units.parquet")
    finally:
        torch.set_num_threads(threads)
    return folder


@pytest.mark.slow
def test_every_task_of_every_type_has_a_row(recipe: Path) -> None:
    data = load_recipe(recipe)
    types = set(data.scores["type"])
    assert {"Retrieval", "Reranking", "Classification", "MultilabelClassification", "PairClassification",
            "Clustering", "STS", "BitextMining", "Summarization", "InstructionRetrieval"} <= types
    comparisons, summary = compare_recipe(data, n_resamples=500)
    tested = {c.task: c.unit_metric for c in comparisons}
    untested = {u.task: u.reason for u in summary["untested"]}
    assert tested == EXPECTED  # each task on a unit metric of its own type, never another task's
    assert set(untested) == set(UNTESTED) and all(UNTESTED[t] in untested[t] for t in UNTESTED)
    assert set(tested) | set(untested) == set(data.scores["task"])

    write_report(recipe)
    report = (recipe / "report.md").read_text()
    significance = json.loads((recipe / "significance.json").read_text())
    assert set(significance["cls_pooling"]["tasks"]) == set(EXPECTED)
    assert set(significance[UNTESTED_KEY]) == set(UNTESTED)
    assert "### Tasks without a per-task test" in report
    assert "With one training seed per arm only query (unit) noise is counted" in report
    for task in [*EXPECTED, *UNTESTED]:
        assert any(line.startswith("| ") and f" {task} " in line for line in report.split("## Across tasks")[0]
                   .split("## Per-task tests")[1].splitlines()), task

    # The leaderboard's marks name the metric they were tested on, and untested tasks are listed.
    from harness.report.leaderboard import leaderboard_markdown

    board = leaderboard_markdown(recipe.parent)
    header = next(line for line in board.splitlines() if line.startswith("| #"))
    assert "MockBitextMiningTask (accuracy; marks: hit)" in header
    assert "UnitsLargerClassification (accuracy; marks: correct)" in header
    assert "MockRetrievalTask (ndcg_at_10)" in header  # tested on its main metric: no note
    assert "- mixed / MockRegressionTask: no per-task test" in board
