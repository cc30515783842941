"""`variant:` references resolve per recipe: loading one recipe never changes another's references."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.recipe import load_recipe

from .conftest import write

TEACHER = """
seeds: [0]
base:
  model: {{backbone: minilm}}
  data: {{total_rows: 16, sources: {{stdlib-code: {{}}}}}}
  train: {{steps: 1, batch_size: 4, lr: {lr}}}
  eval: {{tasks: [HarnessCodeRetrieval]}}
"""

STUDENT = """
seeds: [0]
base:
  model: {backbone: minilm}
  data:
    total_rows: 16
    sources: {stdlib-code: {}}
    filter: {teacher: "variant:teach/base", top_k: null, window: [1, 4], depth: 8}
  train: {steps: 1, batch_size: 4}
  eval: {tasks: [HarnessCodeRetrieval]}
"""


def _teacher_key(student: Path) -> dict[str, str]:
    """The teacher part of the student's data-stage key, as `ablate` plans it."""
    from harness.pipeline import plan, task_revisions

    recipe = load_recipe(student)
    (run,) = plan(recipe, student.parent / "results", task_revisions(recipe))
    return run.data.key["data"]["filter"]["teacher"]


def test_two_recipes_in_one_process_each_resolve_their_own_references(tmp_path: Path, fresh_cache: Path) -> None:
    from harness.references import Resolver
    from harness.stages import train_stage

    # Two folders, each with its own `teach` recipe (different lr: different train stages).
    for folder, lr in (("a", "1.0e-3"), ("b", "2.0e-3")):
        write(tmp_path / folder / "teach.yaml", TEACHER.format(lr=lr))
        write(tmp_path / folder / "student.yaml", STUDENT)
    own = {}
    for folder in ("a", "b"):
        teacher = load_recipe(tmp_path / folder / "teach.yaml")
        with Resolver.for_recipe(teacher.path).active():
            own[folder] = train_stage(teacher.control.run_config(0)).hash
    assert own["a"] != own["b"]

    first_a = _teacher_key(tmp_path / "a" / "student.yaml")
    b = _teacher_key(tmp_path / "b" / "student.yaml")  # loaded after a: it must not shadow a's `teach`
    again_a = _teacher_key(tmp_path / "a" / "student.yaml")
    assert first_a == again_a == {"variant": "variant:teach/base@0", "train_stage": own["a"]}
    assert b == {"variant": "variant:teach/base@0", "train_stage": own["b"]}

    # Resolvers of both recipes side by side, in either order.
    resolver_a = Resolver.for_recipe(tmp_path / "a" / "student.yaml")
    resolver_b = Resolver.for_recipe(tmp_path / "b" / "student.yaml")
    assert resolver_b.identity("variant:teach/base")["train_stage"] == own["b"]
    assert resolver_a.identity("variant:teach/base")["train_stage"] == own["a"]


def test_a_reference_outside_any_recipe_context_is_a_clear_error(tmp_path: Path, fresh_cache: Path) -> None:
    from harness.stages import data_stage

    student = load_recipe(write(tmp_path / "student.yaml", STUDENT))
    with pytest.raises(HarnessError, match="resolves within a command that names its recipe"):
        data_stage(student.control.run_config(0))
