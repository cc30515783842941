"""Command-line key=value overrides: validated like the YAML, hashed like a YAML edit, recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cli import load_variant_config, main
from harness.errors import HarnessError
from harness.overrides import parse_overrides
from harness.recipe import load_recipe

from .conftest import REPO, write

QUICKSTART = REPO / "recipes" / "quickstart.yaml"


def _edited_copy(tmp_path: Path, edit: dict) -> Path:
    """The quickstart with `edit` (dotted key -> value) written into its YAML base."""
    raw = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    for dotted, value in edit.items():
        node = raw["base"]
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part), dict) else node.setdefault(part, {})
        node[last] = value
    return write(tmp_path / "recipes" / "quickstart.yaml", yaml.safe_dump(raw, sort_keys=False))


def test_values_are_yaml_typed() -> None:
    parsed = parse_overrides(["train.lr=1e-4", "eval.tasks=[A, B]", "data.filter=null", "model.normalize=false",
                              "data.sources.stdlib-code.instruction=\"Find the code: x\"", "train.steps=3"])
    assert parsed == {"train.lr": 1e-4, "eval.tasks": ["A", "B"], "data.filter": None, "model.normalize": False,
                      "data.sources.stdlib-code.instruction": "Find the code: x", "train.steps": 3}
    assert isinstance(parsed["train.lr"], float)
    with pytest.raises(HarnessError, match="expected dotted.key=value"):
        parse_overrides(["train.lr"])


def test_override_hashes_equal_the_yaml_edit(tmp_path: Path) -> None:
    edit = {"train.lr": 1e-4, "eval.tasks": ["HarnessCodeRetrieval", "HarnessFEBRLTupleMatching"],
            "data.sources.stdlib-code.weight": 2.0}
    overridden = load_recipe(QUICKSTART, parse_overrides(
        ["train.lr=1e-4", "eval.tasks=[HarnessCodeRetrieval,HarnessFEBRLTupleMatching]",
         "data.sources.stdlib-code.weight=2"]))
    edited = load_recipe(_edited_copy(tmp_path, edit))
    plain = load_recipe(QUICKSTART)
    assert [(v.name, v.hash) for v in overridden.variants] == [(v.name, v.hash) for v in edited.variants]
    assert all(a.hash != b.hash for a, b in zip(overridden.variants, plain.variants, strict=True))
    assert overridden.overrides == {"train.lr": 1e-4, "eval.tasks": ["HarnessCodeRetrieval", "HarnessFEBRLTupleMatching"],
                                    "data.sources.stdlib-code.weight": 2}
    assert plain.overrides == {}


def test_reference_to_the_same_recipe_sees_the_override() -> None:
    """trained-teacher's `variant:quickstart/base` is the overridden base, as with a YAML edit; a
    resolver without the overrides (another command in the same process) sees the plain recipe."""
    from harness.references import Resolver
    from harness.stages import train_stage

    recipe = load_recipe(QUICKSTART, {"train.lr": 1e-4})
    base_train = train_stage(recipe.control.run_config(0)).hash
    edited = Resolver.for_recipe(QUICKSTART, overrides=recipe.overrides)
    assert edited.resolve("variant:quickstart/base").train.hash == base_train
    plain = Resolver.for_recipe(QUICKSTART)
    assert plain.resolve("variant:quickstart/base").train.hash != base_train
    assert edited.resolve("variant:quickstart/base").train.hash == base_train  # no process-wide state


@pytest.mark.parametrize(("item", "expected"), [
    ("train.lrr=1e-4", "override `train.lrr`: unknown key `lrr` under train (did you mean 'lr'?); allowed: batch_size"),
    ("trian.lr=1", "unknown key `trian` under the top level (did you mean 'train'?); allowed: data, eval, model, train"),
    ("train.lr.x=1", "`train.lr` is a value, not a section"),
    ("train.lr=-1", "override `train.lr=-1` (base of"),
    ("model.pooling=max", "key `model.pooling`: Input should be 'mean', 'last_token' or 'cls'"),
    ("data.filter.depth=3", "filter.depth 3 must cover window hi 30"),
])
def test_bad_override_is_one_error_naming_the_key(item: str, expected: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ablate", str(QUICKSTART), "--dry-run", item]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("error:") == 1


def test_dry_run_prints_overrides_after_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ablate", str(QUICKSTART), "--dry-run", "--no-lengths", "--results", str(tmp_path / "r"), "train.steps=3",
                 "data.sources.new-code.kind=stdlib-code"]) == 0
    out = capsys.readouterr().out
    assert "command-line overrides of the base: train.steps=3 data.sources.new-code.kind=stdlib-code" in out
    with pytest.raises(SystemExit) as exc:  # argparse's usage error, as before overrides existed
        main(["ablate", str(QUICKSTART), "--dry-run", "--bogus"])
    assert exc.value.code == 2


def test_train_config_overrides(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "model: {backbone: minilm}\ntrain: {steps: 2}\n")
    loaded = load_variant_config(config, parse_overrides(["train.steps=5", "data.filter.top_k=3"]))
    assert loaded.train.steps == 5 and loaded.data.filter is not None and loaded.data.filter.top_k == 3
    with pytest.raises(HarnessError, match=r"override `train.steps=0` \(.*c.yaml\): key `train.steps`"):
        load_variant_config(config, {"train.steps": 0})
