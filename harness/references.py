"""`variant:RECIPE/VARIANT[@SEED]`: a trained variant as a teacher or backbone.

KaLM's ranking-consistency filter uses a previously *trained* embedder as its teacher. Any backbone
or teacher spec may name one: `variant:quickstart/base` is the `base` variant of the recipe named
`quickstart`, trained with seed 0 (`@1` picks seed 1). It resolves through the stage cache:

- its identity in a stage key is the variant's train-stage hash (so a retrained teacher gives new
  data stages, and nothing depends on where a checkpoint folder lives);
- its weights are that train stage's `model/` folder;
- `ablate` trains a teacher that lives in the same recipe first; one in another recipe must be
  trained there, and the error says with which command.

A `Resolver` belongs to one recipe: it looks recipes up by name in that recipe's folder first, then
in `$HARNESS_RECIPES` (os.pathsep-separated) and `./recipes`. The command creates it and puts it in
effect (`with resolver.active():`) while stage keys are computed and models loaded, so two recipes
in one process never change each other's references. The syntax lives in harness.refsyntax.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.refsyntax import PREFIX, VariantRef, active, is_reference, parse, using

if TYPE_CHECKING:
    from harness.recipe import Recipe, Variant
    from harness.stages import Stage

__all__ = ["PREFIX", "ResolvedRef", "Resolver", "VariantRef", "in_effect", "is_reference", "parse"]


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


@dataclass
class _Session:
    """What one command's resolvers share: loaded recipes (stage keys resolve a reference many times
    per plan) and the references being resolved right now (cycle detection)."""

    loaded: dict[tuple[str, int], Recipe] = field(default_factory=dict)
    resolving: list[str] = field(default_factory=list)
    # command-line key=value edits of a recipe (by resolved path): they apply to its references too
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def load(self, path: Path) -> Recipe:
        from harness.recipe import load_recipe

        key = (str(path.resolve()), path.stat().st_mtime_ns)
        if key not in self.loaded:
            self.loaded[key] = load_recipe(path, self.overrides.get(key[0]))
        return self.loaded[key]


class Resolver:
    """Resolves the `variant:` references written in one recipe (or in no recipe: `Resolver()`)."""

    def __init__(self, folders: Sequence[Path] = (), *, _session: _Session | None = None) -> None:
        self.folders = [Path(f).resolve() for f in folders]
        self._session = _session or _Session()

    @classmethod
    def for_recipe(cls, path: str | Path, *, overrides: dict[str, Any] | None = None,
                   _session: _Session | None = None) -> Resolver:
        """The resolver of the recipe file at `path`: its own folder is searched first; `overrides`
        (the command line's key=value edits of that recipe) hold for references to it as well."""
        resolver = cls([Path(path).parent], _session=_session)
        if overrides:
            resolver._session.overrides[str(Path(path).resolve())] = dict(overrides)
        return resolver

    def search_dirs(self) -> list[Path]:
        extra = [Path(p) for p in os.environ.get("HARNESS_RECIPES", "").split(os.pathsep) if p]
        return [*self.folders, *extra, Path("recipes")]

    def find_recipe(self, name: str) -> Path:
        """The recipe file named `name` (its file stem, or its `name:` key)."""
        searched = []
        for folder in self.search_dirs():
            candidate = folder / f"{name}.yaml"
            searched.append(str(folder))
            if candidate.is_file():
                return candidate
        pattern = re.compile(rf"^name:\s*['\"]?{re.escape(name)}['\"]?\s*$", re.M)
        for folder in self.search_dirs():
            for candidate in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
                if pattern.search(candidate.read_text(encoding="utf-8", errors="replace")):
                    return candidate
        raise HarnessError(f"recipe {name!r} (named by a variant: reference) not found in {', '.join(searched)}; "
                           "set HARNESS_RECIPES to its folder")

    @contextmanager
    def active(self) -> Iterator[Resolver]:
        """Put this resolver in effect for the block (stage keys and model loading use it)."""
        with using(self):
            yield self

    def resolve(self, spec: str) -> ResolvedRef:
        """The recipe, variant and train stage a `variant:` spec names (loading its recipe)."""
        from harness.stages import train_stage

        ref = parse(spec)
        key = str(ref)
        resolving = self._session.resolving
        if key in resolving:
            chain = " -> ".join([*resolving[resolving.index(key):], key])
            raise HarnessError(f"{spec}: the variant depends on itself ({chain}); a variant cannot be its own teacher")
        resolving.append(key)
        try:
            recipe = self._session.load(self.find_recipe(ref.recipe))
            variant = next((v for v in recipe.variants if v.name == ref.variant), None)
            if variant is None:
                names = ", ".join(v.name for v in recipe.variants)
                raise HarnessError(f"{spec}: recipe {recipe.path} has no variant {ref.variant!r}; it has: {names}")
            if ref.seed not in recipe.seeds:
                raise HarnessError(f"{spec}: recipe {recipe.path} trains seeds {recipe.seeds}, not {ref.seed}")
            # the teacher's own references resolve from *its* recipe's folder
            with Resolver.for_recipe(recipe.path, _session=self._session).active():
                train = train_stage(variant.run_config(ref.seed))
            return ResolvedRef(ref, recipe, variant, train)
        finally:
            resolving.pop()

    def checkpoint_of(self, spec: str) -> str:
        """The trained model folder of a `variant:` spec; a clear error (with the command) if not trained."""
        resolved = self.resolve(spec)
        if not resolved.train.done():
            raise HarnessError(f"{spec} is not trained yet (train stage {resolved.train.hash}); train it first with: "
                               f"{resolved.command()}")
        return str(resolved.checkpoint)

    def backbone_of(self, spec: str) -> str:
        """The backbone spec the referenced variant was trained from (its tokenizer is that one's)."""
        return self.resolve(spec).variant.config.model.backbone

    def identity(self, spec: str) -> dict[str, str]:
        """What a `variant:` spec contributes to a stage key: the reference and its train-stage hash."""
        resolved = self.resolve(spec)
        return {"variant": str(resolved.ref), "train_stage": resolved.train.hash}


def in_effect() -> Resolver:
    """The resolver in effect, or one for no recipe ($HARNESS_RECIPES and ./recipes only)."""
    resolver = active()
    return resolver if isinstance(resolver, Resolver) else Resolver()
