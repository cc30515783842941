"""`variant:RECIPE/VARIANT[@SEED]`: a trained variant as a teacher or backbone.

KaLM's ranking-consistency filter uses a previously *trained* embedder as its teacher. Any backbone
or teacher spec may name one: `variant:quickstart/base` is the `base` variant of the recipe named
`quickstart`, trained with seed 0 (`@1` picks seed 1). It resolves through the stage cache:

- its identity in a stage key is the variant's train-stage hash (so a retrained teacher gives new
  data stages, and nothing depends on where a checkpoint folder lives);
- its weights are that train stage's `model/` folder;
- `ablate` trains a teacher that lives in the same recipe first; one in another recipe must be
  trained there, and the error says with which command.

Recipes are looked up by name in the folders of recipes loaded in this process (the referring
recipe's folder first), then in `$HARNESS_RECIPES` (os.pathsep-separated) and `./recipes`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.recipe import Recipe, Variant
    from harness.stages import Stage

PREFIX = "variant:"
_PATTERN = re.compile(r"^variant:(?P<recipe>[^/@]+)/(?P<variant>[^@]+?)(?:@(?P<seed>\d+))?$")
_RECIPE_DIRS: list[Path] = []  # folders of recipes loaded in this process, most recent first
_RESOLVING: list[str] = []  # references being resolved right now (cycle detection)


@dataclass(frozen=True)
class VariantRef:
    recipe: str
    variant: str
    seed: int = 0

    def __str__(self) -> str:
        return f"{PREFIX}{self.recipe}/{self.variant}@{self.seed}"


def is_reference(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse(spec: str) -> VariantRef:
    match = _PATTERN.match(spec)
    if not match:
        raise HarnessError(f"{spec!r}: a trained-variant reference reads variant:RECIPE/VARIANT or "
                           "variant:RECIPE/VARIANT@SEED (e.g. variant:quickstart/base)")
    return VariantRef(match["recipe"], match["variant"], int(match["seed"] or 0))


def register_recipe_dir(folder: Path) -> None:
    """Remember where a loaded recipe lives: references from it find their recipes there first."""
    folder = folder.resolve()
    if folder in _RECIPE_DIRS:
        _RECIPE_DIRS.remove(folder)
    _RECIPE_DIRS.insert(0, folder)


def _search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("HARNESS_RECIPES", "").split(os.pathsep) if p]
    return [*_RECIPE_DIRS, *extra, Path("recipes")]


def find_recipe(name: str) -> Path:
    """The recipe file named `name` (its file stem, or its `name:` key)."""
    searched = []
    for folder in _search_dirs():
        candidate = folder / f"{name}.yaml"
        searched.append(str(folder))
        if candidate.is_file():
            return candidate
    for folder in _search_dirs():
        for candidate in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if re.search(rf"^name:\s*['\"]?{re.escape(name)}['\"]?\s*$", candidate.read_text(encoding="utf-8",
                                                                                      errors="replace"), re.M):
                return candidate
    raise HarnessError(f"recipe {name!r} (named by a variant: reference) not found in {', '.join(searched)}; "
                       "set HARNESS_RECIPES to its folder")


@dataclass(frozen=True)
class ResolvedRef:
    ref: VariantRef
    recipe: Recipe
    variant: Variant
    train: Stage

    @property
    def checkpoint(self) -> Path:
        return self.train.dir / "model"

    def command(self) -> str:
        return f"python -m harness ablate {self.recipe.path}"


_LOADED: dict[tuple[str, int, str], Recipe] = {}


def _load(path: Path) -> Recipe:
    """load_recipe, memoised by (path, mtime): stage keys resolve references many times per plan."""
    from harness.hashing import content_hash
    from harness.overrides import session_overrides
    from harness.recipe import load_recipe

    overrides = session_overrides(path)  # command-line edits of this recipe apply to references too
    key = (str(path.resolve()), path.stat().st_mtime_ns, content_hash(overrides))
    if key not in _LOADED:
        _LOADED[key] = load_recipe(path, overrides)
    return _LOADED[key]


def resolve(spec: str) -> ResolvedRef:
    """The recipe, variant and train stage a `variant:` spec names (loading its recipe)."""
    from harness.stages import train_stage

    ref = parse(spec)
    key = str(ref)
    if key in _RESOLVING:
        chain = " -> ".join([*_RESOLVING[_RESOLVING.index(key):], key])
        raise HarnessError(f"{spec}: the variant depends on itself ({chain}); a variant cannot be its own teacher")
    _RESOLVING.append(key)
    try:
        recipe = _load(find_recipe(ref.recipe))
        variant = next((v for v in recipe.variants if v.name == ref.variant), None)
        if variant is None:
            names = ", ".join(v.name for v in recipe.variants)
            raise HarnessError(f"{spec}: recipe {recipe.path} has no variant {ref.variant!r}; it has: {names}")
        if ref.seed not in recipe.seeds:
            raise HarnessError(f"{spec}: recipe {recipe.path} trains seeds {recipe.seeds}, not {ref.seed}")
        return ResolvedRef(ref, recipe, variant, train_stage(variant.run_config(ref.seed)))
    finally:
        _RESOLVING.pop()


def checkpoint_of(spec: str) -> str:
    """The trained model folder of a `variant:` spec; a clear error (with the command) if not trained."""
    resolved = resolve(spec)
    if not resolved.train.done():
        raise HarnessError(f"{spec} is not trained yet (train stage {resolved.train.hash}); train it first with: "
                           f"{resolved.command()}")
    return str(resolved.checkpoint)


def identity(spec: str) -> dict[str, str]:
    """What a `variant:` spec contributes to a stage key: the reference and its train-stage hash."""
    resolved = resolve(spec)
    return {"variant": str(resolved.ref), "train_stage": resolved.train.hash}
