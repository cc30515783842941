"""One guarded YAML reader for every user file: recipes and task folders' task.yaml alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import EvalConfig
from harness.errors import HarnessError

from .conftest import tiny_column_task, write

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" \
       "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"


def test_a_task_folders_task_yaml_gets_the_recipe_loaders_guards(tmp_path: Path) -> None:
    from harness.evaluate.resolve import task_names

    folder = tiny_column_task(tmp_path / "cols", "MyColumns")
    assert task_names(EvalConfig(tasks=[str(folder)])) == ["MyColumns"]

    write(folder / "task.yaml", "name: MyColumns\nkind: column\nname: Other\n")
    with pytest.raises(HarnessError, match=r"task\.yaml:3:1: duplicate key `name` \(first on line 1\)"):
        task_names(EvalConfig(tasks=[str(folder)]))
    write(folder / "task.yaml", "name: MyColumns\nkind: column\n" + BOMB)
    with pytest.raises(HarnessError, match="aliases expand to more than"):
        task_names(EvalConfig(tasks=[str(folder)]))
    write(folder / "task.yaml", "- name\n- kind\n")
    with pytest.raises(HarnessError, match="a task must be a YAML mapping"):
        task_names(EvalConfig(tasks=[str(folder)]))


def test_recipe_messages_are_unchanged_and_the_old_private_names_are_gone(tmp_path: Path) -> None:
    import harness.recipe
    from harness.recipe import load_recipe

    assert not hasattr(harness.recipe, "_read_yaml") and not hasattr(harness.recipe, "_pydantic_message")
    with pytest.raises(HarnessError, match="recipe file not found"):
        load_recipe(tmp_path / "none.yaml")
    with pytest.raises(HarnessError, match="a recipe must be a YAML mapping"):
        load_recipe(write(tmp_path / "list.yaml", "- 1\n"))
