"""A trained variant as teacher: `variant:RECIPE/VARIANT[@SEED]`, resolved through the stage cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.recipe import load_recipe

from .conftest import write

RECIPE = """
seeds: [0]
base:
  model: {{backbone: tiny-qwen2, query_max_length: 24, passage_max_length: 32}}
  data:
    total_rows: 64
    hard_negatives: 1
    sources: {{stdlib-code: {{}}, cldr-bitext: {{langs: [yo, ha]}}}}
    filter: {{teacher: tiny-qwen2, top_k: null, window: [2, 10], depth: 16, max_length: 32}}
  train: {{steps: 2, batch_size: 8, lr: 1.0e-3, log_every: 1}}
  eval: {{tasks: [HarnessCLDRBitextMining], languages: [yor, hau], batch_size: 128}}
variants:
  trained-teacher: {{data.filter.teacher: "variant:{name}/base", data.filter.top_k: 5}}
"""


@pytest.mark.slow
def test_a_recipe_filters_with_its_own_trained_base_as_teacher(tmp_path: Path, fresh_cache: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from harness.references import Resolver
    from harness.stages import data_stage, train_stage

    recipe_path = write(tmp_path / "teachy.yaml", RECIPE.format(name="teachy"))
    recipe = load_recipe(recipe_path)
    base, arm = recipe.variants
    with Resolver.for_recipe(recipe_path).active():  # what `ablate` puts in effect for its recipe
        base_train = train_stage(base.run_config(0))
        # The teacher's train-stage hash is part of the arm's data-stage key.
        arm_data = data_stage(arm.run_config(0))
    assert arm_data.key["data"]["filter"]["teacher"] == {"variant": "variant:teachy/base@0",
                                                         "train_stage": base_train.hash}

    assert main(["ablate", str(recipe_path), "--dry-run", "--no-lengths"]) == 0
    dry = capsys.readouterr().out
    assert f"depends on variant:teachy/base@0 (train stage {base_train.hash}): trained first by this ablate" in dry

    results = tmp_path / "results"
    assert main(["ablate", str(recipe_path), "--results", str(results), "--no-leaderboard", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.index("[1/2] base") < out.index("[2/2] trained-teacher")
    card = json.loads((results / "teachy" / "trained-teacher" / "seed-0" / "data_card.json").read_text())
    assert card["filter"]["teacher"]["spec"] == "variant:teachy/base"
    assert card["filter"]["teacher"]["teacher_pass"] == "miss"  # a new pass with the trained teacher
    assert base_train.done()

    # Another recipe may use it once trained.
    other = write(tmp_path / "other.yaml", RECIPE.format(name="teachy").replace("trained-teacher", "from-teachy"))
    assert main(["ablate", str(other), "--dry-run", "--no-lengths"]) == 0
    assert f"depends on variant:teachy/base@0 (train stage {base_train.hash}): trained\n" in capsys.readouterr().out


def test_an_untrained_teacher_in_another_recipe_stops_with_the_command(tmp_path: Path, fresh_cache: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "teachy.yaml", RECIPE.format(name="teachy"))
    other = write(tmp_path / "other.yaml", RECIPE.format(name="teachy").replace("trained-teacher", "borrowed"))
    results = tmp_path / "results"
    assert main(["ablate", str(other), "--results", str(results), "--no-leaderboard", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "variant 'borrowed' uses variant:teachy/base, which is not trained yet" in err
    assert f"python -m harness ablate {tmp_path / 'teachy.yaml'}" in err
    assert not results.exists()  # nothing was run


def test_references_are_checked_at_load_and_cycles_are_named(tmp_path: Path, fresh_cache: Path) -> None:
    bad = write(tmp_path / "bad.yaml", RECIPE.format(name="x").replace('"variant:x/base"', '"variant:nonsense"'))
    with pytest.raises(HarnessError, match=r"variant:RECIPE/VARIANT"):
        load_recipe(bad)
    selfish = write(tmp_path / "selfish.yaml", RECIPE.format(name="selfish").replace(
        "teacher: tiny-qwen2, top_k: null", 'teacher: "variant:selfish/base", top_k: null'))
    from harness.pipeline import plan, task_revisions

    recipe = load_recipe(selfish)
    with pytest.raises(HarnessError, match="depends on itself"):
        plan(recipe, tmp_path / "results", task_revisions(recipe))
    missing = write(tmp_path / "missing.yaml", RECIPE.format(name="nowhere"))
    recipe = load_recipe(missing)
    with pytest.raises(HarnessError, match="recipe 'nowhere'.*not found"):
        plan(recipe, tmp_path / "results", task_revisions(recipe))
