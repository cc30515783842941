"""Seed scope (issue 20, point 4): a recipe's seed varies training only (default) or the data stage too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data.mix import build_table
from harness.errors import HarnessError
from harness.recipe import load_recipe
from harness.references import Resolver
from harness.stages import data_stage, train_stage

from .conftest import REPO, write

RECIPE = """
seeds: [0, 1]
base:
  model: {backbone: minilm}
  data:
    total_rows: 40
    seed: 0
    sources:
      stdlib-code: {weight: 1.0}
  train: {steps: 3, lr: 1e-5, batch_size: 4}
"""


def test_default_scope_keeps_the_committed_quickstart_stage_hashes(fresh_cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No `seed_scope` = `train`: every data and train stage hash is the one the committed results were made with."""
    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml")
    assert recipe.seed_scope == "train"
    compared = 0
    for variant in recipe.variants:
        run = REPO / "results" / "quickstart" / variant.name / "seed-0" / "run.json"
        if not run.is_file():
            continue
        record = json.loads(run.read_text(encoding="utf-8"))
        stages = record["stages"]
        # `bf16: auto` resolved where the committed results were made: plan as that CPU would
        native = record["precision"]["train"] == "bf16"
        monkeypatch.setenv("HARNESS_SIMULATE_CPU", "AVX512_BF16" if native else "AVX2")
        config = variant.run_config(0)
        with Resolver.for_recipe(recipe.path).active():  # trained-teacher names variant:quickstart/base
            assert (data_stage(config).hash, train_stage(config).hash) == (stages["data"], stages["train"]), variant.name
        compared += 1
    assert compared >= 3


def test_train_scope_varies_train_seed_only(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path / "r.yaml", RECIPE))
    configs = [recipe.control.run_config(seed) for seed in recipe.seeds]
    assert [c.train.seed for c in configs] == [0, 1]
    assert [c.data.seed for c in configs] == [0, 0]
    assert data_stage(configs[0]).hash == data_stage(configs[1]).hash  # one data stage, shared by both seeds
    explicit = load_recipe(write(tmp_path / "explicit.yaml", "seed_scope: train\n" + RECIPE))
    assert [v.hash for v in explicit.variants] == [v.hash for v in recipe.variants]
    assert train_stage(explicit.control.run_config(1)).hash == train_stage(configs[1]).hash


def test_train_data_scope_resamples_the_training_table(tmp_path: Path, fresh_cache: Path) -> None:
    """With `train+data` each seed is also the data seed: another sample of the real source, another stage."""
    recipe = load_recipe(write(tmp_path / "r.yaml", "seed_scope: train+data\n" + RECIPE))
    assert recipe.seed_scope == "train+data"
    configs = [recipe.control.run_config(seed) for seed in recipe.seeds]
    assert [(c.train.seed, c.data.seed) for c in configs] == [(0, 0), (1, 1)]
    assert data_stage(configs[0]).hash != data_stage(configs[1]).hash
    default = load_recipe(write(tmp_path / "d.yaml", RECIPE)).control.run_config(0)
    assert data_stage(configs[0]).hash == data_stage(default).hash  # seed 0 = the default's data stage
    cards = [build_table(c.data, tmp_path / f"table-{c.data.seed}", show_progress=False) for c in configs]
    assert cards[0]["rows"] == cards[1]["rows"] == 40
    assert cards[0]["content_hash"] != cards[1]["content_hash"]  # different rows sampled


def test_train_data_scope_inherited_and_refuses_a_data_seed_axis(tmp_path: Path) -> None:
    parent = write(tmp_path / "parent.yaml", "seed_scope: train+data\n" + RECIPE)
    child = load_recipe(write(tmp_path / "child.yaml", f"extends: {parent.name}\nablate:\n  train.lr: [3e-5]\n"))
    assert child.seed_scope == "train+data" and child.variants[1].run_config(1).data.seed == 1
    bad = write(tmp_path / "bad.yaml", "seed_scope: train+data\n" + RECIPE + "ablate:\n  data.seed: [1, 2]\n")
    with pytest.raises(HarnessError, match=r"bad\.yaml: key `ablate\.data\.seed`: with `seed_scope: train\+data`"):
        load_recipe(bad)
    with pytest.raises(HarnessError, match="seed_scope"):
        load_recipe(write(tmp_path / "typo.yaml", "seed_scope: data\n" + RECIPE))
