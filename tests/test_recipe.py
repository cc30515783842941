"""Recipe loading: expansion, hashing, inheritance, and one clear error per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.recipe import load_recipe

from .conftest import REPO, write

BASE = """
base:
  model: {backbone: minilm}
  data:
    sources:
      stdlib-code: {weight: 1.0}
      cldr-bitext: {weight: 1.0}
  train: {steps: 3, lr: 1e-5, batch_size: 4}
"""


def test_oneway_expansion_names_hashes_and_control(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", BASE + """
ablate:
  data.sources.cldr-bitext.weight: [0.0, 1.0]
  train.lr: [1e-5, 3e-5]
""")
    recipe = load_recipe(path)
    names = [v.name for v in recipe.variants]
    # values equal to the base are covered by the control and not repeated
    assert names == ["base", "cldr-bitext.weight=0", "lr=3e-05"]
    assert recipe.control.overrides == {}
    assert recipe.variants[2].config.train.lr == pytest.approx(3e-5)  # "1e-5" style floats are floats
    hashes = [v.hash for v in recipe.variants]
    assert len(set(hashes)) == 3 and all(len(h) == 12 for h in hashes)
    again = load_recipe(path)
    assert [v.hash for v in again.variants] == hashes  # deterministic


def test_grid_mode_is_the_cartesian_product(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", BASE + """
mode: grid
seeds: [0, 1]
ablate:
  train.temperature: [0.05, 0.02]
  train.lr: [1e-5, 2e-5]
""")
    recipe = load_recipe(path)
    assert [v.name for v in recipe.variants] == [
        "base", "temperature=0.05,lr=2e-05", "temperature=0.02,lr=1e-05", "temperature=0.02,lr=2e-05"]
    assert recipe.seeds == [0, 1]
    assert recipe.variants[0].run_config(1).train.seed == 1


def test_seed_does_not_change_the_variant_hash(tmp_path: Path) -> None:
    a = load_recipe(write(tmp_path / "a.yaml", BASE + "seeds: [0]\n")).control
    b = load_recipe(write(tmp_path / "b.yaml", BASE + "seeds: [7]\n")).control
    assert a.hash == b.hash


def test_extends_merges_base_and_keeps_child_axes(tmp_path: Path) -> None:
    write(tmp_path / "parent.yaml", BASE + "seeds: [3]\nablate:\n  train.lr: [5e-5]\n")
    child = write(tmp_path / "child.yaml", """
extends: parent.yaml
base:
  train: {temperature: 0.01}
ablate:
  train.batch_size: [8]
""")
    recipe = load_recipe(child)
    assert recipe.base.train.temperature == 0.01
    assert recipe.base.train.lr == pytest.approx(1e-5)  # inherited
    assert recipe.seeds == [3]
    assert [v.name for v in recipe.variants] == ["base", "batch_size=8"]
    assert recipe.name == "child"


def test_explicit_variants(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path / "v.yaml", BASE + """
variants:
  code-only: {data.sources.cldr-bitext.weight: 0.0}
"""))
    assert [v.name for v in recipe.variants] == ["base", "code-only"]
    assert recipe.variants[1].config.data.sources["cldr-bitext"].weight == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "ablate:\n  train.lrr: [1e-5]\n", ["ablate.train.lrr", "did you mean 'lr'", "allowed:"]),
        (BASE + "ablate:\n  train.lr: []\n", ["ablate.train.lr", "empty axis"]),
        (BASE + "ablate:\n  train.lr: ['fast']\n", ["train.lr", "valid number"]),
        (BASE + "ablate:\n  train.lr: [-1.0]\n", ["train.lr", "greater than 0"]),
        (BASE + "mode: zigzag\n", ["mode", "'grid' or 'oneway'"]),
        (BASE + "ablation:\n  train.lr: [1]\n", ["unknown key `ablation`", "did you mean 'ablate'", "allowed:"]),
        (BASE.replace("batch_size: 4", "batch_sise: 4"), ["unknown key `base.train.batch_sise`", "batch_size"]),
        (BASE.replace("steps: 3", "steps: three"), ["base.train.steps", "valid integer"]),
        (BASE + "ablate:\n  data.sources.stdlib-code.weight: [0.0]\n  data.sources.cldr-bitext.weight: [0.0]\n"
         "mode: grid\n", ["every source has weight 0"]),
        ("base:\n  model: {backbone: minilm\n", ["YAML syntax error", ":3:"]),
        ("- just\n- a list\n", ["must be a YAML mapping"]),
        (BASE + "extends: nowhere.yaml\n", ["extends", "nowhere.yaml", "not found"]),
    ],
)
def test_bad_recipes_fail_with_one_clear_message(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(HarnessError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message, message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_yaml_cannot_execute_code(tmp_path: Path) -> None:
    path = write(tmp_path / "evil.yaml", "base: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(HarnessError, match="YAML syntax error"):
        load_recipe(path)


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(HarnessError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_shipped_recipes_load() -> None:
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        assert recipe.variants[0].name == "base"
        assert len(recipe.variants) >= 2, path
