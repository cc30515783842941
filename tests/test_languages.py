"""`eval.languages`: a multilingual task keeps only the subsets in the given languages (mteb's own
filter), monolingual tasks are kept whole, benchmarks drop multilingual tasks with none of them,
and the eval stage's key tells a restricted run from a full one. On real task metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import EvalConfig, VariantConfig
from harness.errors import HarnessError
from harness.evaluate.resolve import all_subsets, eval_revision, resolve_tasks, task_names
from harness.recipe import load_recipe

from .conftest import write

AFRICAN = ["amh", "hau", "ibo", "yor", "swh", "xho", "zul", "gaz", "som", "kin"]


def test_bitext_keeps_the_named_languages_and_monolingual_tasks_stay_whole() -> None:
    full = resolve_tasks(EvalConfig(tasks=["HarnessCLDRBitextMining", "HarnessCodeRetrieval"]))
    cut = resolve_tasks(EvalConfig(tasks=["HarnessCLDRBitextMining", "HarnessCodeRetrieval"], languages=AFRICAN))
    kept = cut["HarnessCLDRBitextMining"].hf_subsets
    assert len(all_subsets(full["HarnessCLDRBitextMining"])) == 19
    assert sorted(kept) == sorted(f"eng-{code}" for code in AFRICAN)
    assert cut["HarnessCodeRetrieval"].hf_subsets == ["default"]
    # only the restricted task's stage key changes: a full run's stages are neither reused nor fed
    assert eval_revision(cut["HarnessCLDRBitextMining"]) != eval_revision(full["HarnessCLDRBitextMining"])
    assert eval_revision(cut["HarnessCodeRetrieval"]) == eval_revision(full["HarnessCodeRetrieval"])
    assert eval_revision(full["HarnessCLDRBitextMining"]) == str(
        full["HarnessCLDRBitextMining"].metadata.dataset["revision"])


def test_script_codes_and_a_task_without_the_language() -> None:
    (task,) = resolve_tasks(EvalConfig(tasks=["HarnessCLDRBitextMining"], languages=["jpn-Jpan"])).values()
    assert task.hf_subsets == ["eng-jpn"]
    with pytest.raises(HarnessError, match=r"HarnessCLDRBitextMining has no subset in eval.languages \['tlh'\]"):
        resolve_tasks(EvalConfig(tasks=["HarnessCLDRBitextMining"], languages=["tlh"]))


def test_benchmark_drops_multilingual_tasks_without_the_languages_and_names_agree() -> None:
    from harness.evaluate.benchmarks import get_benchmark

    before = {t.metadata.name: list(t.hf_subsets) for t in get_benchmark("AfriMTEB-Lite").tasks}
    config = EvalConfig(tasks=[], benchmarks=["AfriMTEB-Lite"], languages=["amh"])
    every = task_names(EvalConfig(tasks=[], benchmarks=["AfriMTEB-Lite"]))
    names = task_names(config)
    assert set(names) < set(every)
    tasks = resolve_tasks(config)
    assert list(tasks) == names
    for task in tasks.values():
        if len(all_subsets(task)) > 1:
            assert task.hf_subsets and all("amh" in str(task.metadata.hf_subsets_to_langscripts[s])
                                           for s in task.hf_subsets)
    # mteb's shared benchmark objects are untouched: an unrestricted resolve still sees every subset
    again = resolve_tasks(EvalConfig(tasks=[], benchmarks=["AfriMTEB-Lite"]))
    assert {name: list(t.hf_subsets) for name, t in again.items()} == before
    # a benchmark that already keeps a slice of a task (mteb's own selection) is keyed by that slice
    sliced = [t for t in again.values() if sorted(t.hf_subsets) != sorted(all_subsets(t))]
    assert sliced and all("+subsets-" in eval_revision(t) for t in sliced)


@pytest.mark.parametrize("bad", ["amharic", "AMH", "am", "amh-ethi", ""])
def test_bad_language_codes_are_rejected_with_the_rule(bad: str) -> None:
    with pytest.raises(ValueError, match="languages"):
        VariantConfig.model_validate({"eval": {"languages": [bad]}})


def test_variants_must_agree_on_languages(tmp_path: Path) -> None:
    from harness.pipeline import task_revisions

    recipe = load_recipe(write(tmp_path / "r.yaml", """
name: langs
base:
  eval: {tasks: [HarnessCLDRBitextMining]}
variants:
  african: {eval.languages: [amh, hau]}
"""))
    with pytest.raises(HarnessError, match=r"r.yaml: variant 'african' evaluates other subsets of "
                                           r"HarnessCLDRBitextMining \(eval.languages\)"):
        task_revisions(recipe)


def test_leaderboard_gives_each_slice_of_a_task_its_own_column(tmp_path: Path) -> None:
    """A baseline on every CLDR language and a recipe on five African ones are different test sets:
    they must not share (and be averaged in) one column; significance marks still find their task."""
    import json

    from harness.report.leaderboard import leaderboard_markdown

    def run(folder: Path, subsets: list[str], score: float) -> None:
        task = {"type": "BitextMining", "revision": "r", "main_metric": "f1", "main_score": score,
                "subsets": {s: {"main_score": score} for s in subsets}}
        code = {"type": "Retrieval", "revision": "r", "main_metric": "ndcg_at_10", "main_score": 0.5,
                "subsets": {"default": {"main_score": 0.5}}}
        write(folder / "seed-0" / "scores.json", json.dumps(
            {"model_name": "m", "seed": 0, "tasks": {"HarnessCLDRBitextMining": task, "HarnessCodeRetrieval": code}}))

    african = ["eng-amh", "eng-hau", "eng-ibo", "eng-yor", "eng-zul"]
    run(tmp_path / "baselines" / "minilm", african + ["eng-deu", "eng-fra"], 0.3)
    run(tmp_path / "langs" / "base", african, 0.4)
    board = leaderboard_markdown(tmp_path)
    assert "HarnessCLDRBitextMining [7 subsets] (f1)" in board
    assert "HarnessCLDRBitextMining [5 subsets] (f1)" in board
    assert "HarnessCodeRetrieval (ndcg_at_10)" in board  # one slice everywhere: the plain name
    # the baseline's row has no score in the recipe's slice, and the other way round; a row missing a
    # task has no Mean(Task) / Mean(TaskType) (the MTEB rule, harness/report/aggregates.py)
    base_row = next(line for line in board.splitlines() if "| base " in line)
    assert base_row.count("–") == 3 and "40.00" in base_row


def test_a_recipe_whose_task_has_none_of_its_languages_names_file_and_variant(tmp_path: Path) -> None:
    from harness.pipeline import task_revisions

    recipe = load_recipe(write(tmp_path / "r.yaml", """
name: nolang
base:
  eval: {tasks: [HarnessCLDRBitextMining], languages: [tlh]}
"""))
    with pytest.raises(HarnessError, match=r"r.yaml: variant 'base': eval.tasks: HarnessCLDRBitextMining has no "
                                           r"subset in eval.languages \['tlh'\]"):
        task_revisions(recipe)

