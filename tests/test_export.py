"""`harness export mteb`: the committed quickstart results (and baselines) round-trip through
`mteb.ResultCache`, and mteb's own tables give back the numbers of the committed leaderboard.md."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.evaluate.benchmarks import HARNESS_BENCHMARKS
from harness.report.results import load_scores

from .conftest import REPO

# the quickstart's (and the committed baselines') benchmark, in the leaderboard's column order
TASKS = sorted(HARNESS_BENCHMARKS["Harness(offline, v1, lite)"])


def _leaderboard_rows() -> dict[tuple[str, str], list[str]]:
    """(recipe, variant) -> [Mean(Task), <task columns>...] as printed in the committed leaderboard.md
    (columns: #, recipe, variant, seeds, Mean(Task), Mean(TaskType), Borda rank, Δ vs base, tasks...)."""
    rows = {}
    for line in (REPO / "leaderboard.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 8 or not cells[0].isdigit():
            continue
        recipe = cells[1].split("]")[0].lstrip("[")
        rows[(recipe, cells[2])] = [cells[4], *(c.rstrip("*") for c in cells[8:])]
    return rows


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mteb-export")
    assert main(["export", "mteb", str(REPO / "results"), "--out", str(out)]) == 0
    return out


def test_result_cache_loads_every_run(exported: Path) -> None:
    import mteb

    results = mteb.ResultCache(exported).load_results(include_remote=False)
    names = {m.model_name: m for m in results}
    from harness.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml")
    assert len(names) == len(recipe.variants) * len(recipe.seeds) + 2  # every quickstart run, 2 baselines
    assert "harness-quickstart/base-seed0" in names and "mteb/baseline-random-encoder" in names
    assert names["mteb/baseline-random-encoder"].model_revision == "2"  # mteb's own registry entry
    for model in results:
        assert sorted(t.task_name for t in model.task_results) == TASKS
    # the revision is the run's train-stage hash, as the encoder reported it to mteb
    run = (REPO / "results" / "quickstart" / "base" / "seed-0" / "run.json").read_text()
    assert f'"train": "{names["harness-quickstart/base-seed0"].model_revision}"' in run


def test_mteb_tables_reproduce_the_leaderboard(exported: Path) -> None:
    import mteb

    from harness.export.mteb import benchmark_for

    results = mteb.ResultCache(exported).load_results(include_remote=False)
    from harness.recipe import load_recipe

    languages = load_recipe(REPO / "recipes" / "quickstart.yaml").base.eval.languages
    bench = benchmark_for(TASKS, name="quickstart", languages=languages)
    scores = bench.get_score(results)  # mteb's Mean(Task) and Borda rank per model
    per_task = results.to_dataframe().set_index("task_name")  # mteb's per-task table, one column per model

    def row(model: str) -> tuple[str, str]:
        if model.startswith("harness-quickstart/"):
            return "quickstart", model.split("/", 1)[1].rsplit("-seed", 1)[0]
        return "baselines", {"mteb/baseline-random-encoder": "random-encoder"}.get(model, model.split("/")[-1])

    table = pd.DataFrame([{"row": row(m), "mean": s["Mean(Task)"], **per_task[m].to_dict()} for m, s in scores.items()])
    expected = _leaderboard_rows()
    assert set(table["row"]) == set(expected)
    for key, group in table.groupby("row"):  # the leaderboard averages seeds
        means = group[["mean", *TASKS]].mean() * 100
        assert [f"{means[c]:.2f}" for c in ["mean", *TASKS]] == expected[key], key

    # Borda: each model earns (n - rank) per task, ranked by the sum; recomputed from the harness's scores.json
    harness = load_scores(REPO / "results")
    harness["model"] = [f"harness-{r}/{v}-seed{s}" if r != "baselines" else r + "/" + v
                        for r, v, s in zip(harness.recipe, harness.variant, harness.seed, strict=True)]
    wide = harness.pivot_table(index="model", columns="task", values="main_score")
    points = (len(wide) - wide.rank(ascending=False, method="average")).sum(axis=1)
    borda = points.rank(ascending=False, method="min").astype(int)
    rename = {"baselines/minilm": "harness-baseline/minilm", "baselines/random-encoder": "mteb/baseline-random-encoder"}
    assert {rename.get(m, m): int(r) for m, r in borda.items()} == {m: s["Rank"] for m, s in scores.items()}


def test_harness_tasks_are_not_in_mteb_registry_so_task_type_tables_fail(exported: Path) -> None:
    """Documented limitation (mteb2.md pitfall 3): anything that calls mteb.get_task(name)."""
    import mteb

    results = mteb.ResultCache(exported).load_results(include_remote=False)
    with pytest.raises(KeyError, match="HarnessCLDRBitextMining"):
        results.get_aggregated_scores()  # Mean(TaskType) looks the task type up in mteb's registry


def test_export_of_a_folder_without_results_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["export", "mteb", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no <variant>/seed-N/scores.json" in err and "Traceback" not in err
