"""Recipes: a YAML file of ablation axes over a base variant config.

Loading is strict and happens before any work: a bad recipe stops with one message naming the
file, the key and what is allowed, and nothing is written. YAML is read by harness.yamlio: a safe
loader, so a recipe can never execute code; duplicate keys are errors, and aliases that would expand
beyond `MAX_YAML_NODES` values (a "billion laughs" file) are rejected before anything is expanded.
Every name that becomes a folder (recipe, variants) is checked by `harness.paths.name_problem`.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator

from harness.config import MAX_SEED, VariantConfig
from harness.errors import HarnessError
from harness.hashing import content_hash
from harness.paths import CONTROL_NAME, NAME_MAX, UNSAFE_CHAR, name_problem
from harness.yamlio import pydantic_message, read_yaml

# What a recipe's seed varies: the training run only (init of new heads, batch order, dropout), or
# also the data stage (`data.seed`: per-source sampling, random hard-negative mining). See README.
SeedScope = Literal["train", "train+data"]
DEFAULT_SEED_SCOPE: SeedScope = "train"
# Config paths whose children are free-form names (a new key there adds an entry).
OPEN_MAPPINGS = {("data", "sources")}
# Limits far above any real recipe (KaLM's 70-dataset recipe has ~1,500 YAML values).
MAX_VARIANTS = 1_000
MAX_SEEDS = 100
VALUE_NAME_MAX = 40  # an axis value longer than this is shortened (with a hash) in variant names


class RecipeFile(BaseModel):
    """The raw schema of one recipe file, before `extends` is merged and `base` validated."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str = ""
    extends: str | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    ablate: dict[str, list[Any]] = Field(default_factory=dict)
    mode: Literal["grid", "oneway"] = "oneway"
    seeds: list[Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)]] | None = Field(
        None, min_length=1, max_length=MAX_SEEDS)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seed_scope: SeedScope | None = None  # None: the parent's (extends), else DEFAULT_SEED_SCOPE

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        repeated = sorted({s for s in seeds or [] if (seeds or []).count(s) > 1})
        if repeated:
            raise ValueError(f"seed(s) {repeated} repeated; each seed is one training run of every variant")
        return seeds


@dataclass(frozen=True)
class Variant:
    """One arm of an ablation: a name, the overrides it applies to the base, its config."""

    name: str
    overrides: dict[str, Any]
    config: VariantConfig
    hash: str
    seed_scope: SeedScope = "train"

    def run_config(self, seed: int) -> VariantConfig:
        """The config of one run: the seed sets `train.seed`, and with seed scope `train+data` also
        `data.seed` (sampling, de-duplication order, random negative mining)."""
        cfg = self.config.model_copy(deep=True)
        cfg.train.seed = seed
        if self.seed_scope == "train+data":
            cfg.data.seed = seed
        return cfg


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    description: str
    mode: str
    seeds: list[int]
    base: VariantConfig
    axes: dict[str, list[Any]]
    variants: list[Variant] = field(default_factory=list)
    seed_scope: SeedScope = DEFAULT_SEED_SCOPE
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line key=value (harness/overrides.py)

    @property
    def control(self) -> Variant:
        return self.variants[0]


# ----------------------------------------------------------------------------- loading


def _deep_merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_raw(path: Path, seen: tuple[Path, ...] = ()) -> tuple[RecipeFile, dict[str, Any]]:
    """Read a recipe and its `extends` chain; return the child's schema and the merged base."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise HarnessError(f"{path}: key `extends`: cycle in recipe inheritance ({chain})")
    raw = read_yaml(path)
    try:
        recipe_file = RecipeFile.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(pydantic_message(path, exc, "", RecipeFile)) from None
    base = recipe_file.base
    if recipe_file.extends:
        parent_path = (path.parent / recipe_file.extends).resolve()
        if not parent_path.is_file():
            raise HarnessError(f"{path}: key `extends`: parent recipe {recipe_file.extends!r} not found")
        parent_file, parent_base = _load_raw(parent_path, (*seen, path))
        base = _deep_merge(parent_base, base)
        # Only `base` is inherited; a child names its own axes, seeds and variants, falling
        # back to the parent's seeds so a shared base can fix them once.
        if recipe_file.seeds is None:
            recipe_file.seeds = parent_file.seeds
        if recipe_file.seed_scope is None:
            recipe_file.seed_scope = parent_file.seed_scope
    return recipe_file, base


# ----------------------------------------------------------------------------- axes


def _split(dotted: str) -> list[str]:
    return dotted.split(".")


def _check_axis_path(path: Path, dotted: str, base: dict[str, Any]) -> None:
    parts = _split(dotted)
    node: Any = base
    for depth, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        if tuple(parts[:depth]) in OPEN_MAPPINGS:
            return  # adding a new named entry (e.g. a new data source) is allowed
        where = ".".join(parts[:depth]) or "<top level>"
        options = sorted(node.keys()) if isinstance(node, dict) else []
        hint = difflib.get_close_matches(part, options, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise HarnessError(
            f"{path}: key `ablate.{dotted}`: unknown config path; `{part}` is not under {where}"
            f"{did_you_mean}; allowed: {', '.join(options) or 'nothing (a value, not a section)'}"
        )


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    resolved = copy.deepcopy(base)
    for dotted, value in overrides.items():
        parts = _split(dotted)
        node = resolved
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(value)
    return resolved


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in _split(dotted):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def format_value(value: Any) -> str:
    """A short, filesystem-safe rendering of an axis value for variant names.

    Safe by construction: every character outside `harness.paths.NAME_CHARS` becomes `_`, a long
    value keeps its start plus a content hash, and lists / mappings are a content hash.
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float | str):
        text = UNSAFE_CHAR.sub("_", str(value))
        if len(text) > VALUE_NAME_MAX:
            text = f"{text[:VALUE_NAME_MAX - 7]}-{content_hash(value, 6)}"
        return text
    return content_hash(value, 6)


def _generated_name(parts: list[str], overrides: dict[str, Any]) -> str:
    """A variant name from `axis=value` parts; too long a name keeps its start plus a hash."""
    name = UNSAFE_CHAR.sub("_", ",".join(parts))
    if len(name) > NAME_MAX:
        name = f"{name[:NAME_MAX - 7]}-{content_hash(overrides, 6)}"
    return name


def _short_names(axes: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each axis that is unique among the recipe's axes."""
    names: dict[str, str] = {}
    for axis in axes:
        parts = _split(axis)
        # under a named mapping (data.sources.<name>.…) the name is always part of the label
        start = next((len(parts) - len(prefix) for prefix in OPEN_MAPPINGS if tuple(parts[: len(prefix)]) == prefix
                      and len(parts) > len(prefix)), 1)
        for n in range(start, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if all(not other.endswith(suffix) or other == axis for other in axes) or n == len(parts):
                names[axis] = suffix
                break
    return names


def _expand(recipe_file: RecipeFile, base: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    axes = recipe_file.ablate
    short = _short_names(list(axes))
    arms: list[tuple[str, dict[str, Any]]] = [(CONTROL_NAME, {})]
    if recipe_file.mode == "oneway":
        for axis, values in axes.items():
            for value in values:
                if value == _get(base, axis):
                    continue  # the control already covers the base value
                arms.append((_generated_name([f"{short[axis]}={format_value(value)}"], {axis: value}),
                             {axis: value}))
    else:
        for combo in itertools.product(*axes.values()):
            overrides = dict(zip(axes, combo, strict=True))
            if all(value == _get(base, axis) for axis, value in overrides.items()):
                continue
            name = _generated_name([f"{short[a]}={format_value(v)}" for a, v in overrides.items()], overrides)
            arms.append((name, overrides))
    for name, overrides in recipe_file.variants.items():
        arms.append((name, overrides))
    return arms


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Load, merge, validate and expand a recipe; `overrides` (dotted key -> value) edit the base
    before validation, as a YAML edit would. Raises HarnessError on any problem."""
    from harness.overrides import apply_overrides, check_values

    path = Path(path)
    cli_overrides = dict(overrides or {})
    recipe_file, base = _load_raw(path)
    if cli_overrides:
        edited = apply_overrides(base, cli_overrides, VariantConfig)
        check_values(base, edited, cli_overrides, VariantConfig, f"base of {path}")
        base = edited
    try:
        base_config = VariantConfig.model_validate(base)
    except ValidationError as exc:
        raise HarnessError(pydantic_message(path, exc, "base", VariantConfig)) from None
    base_dict = base_config.to_dict()

    name = recipe_file.name or path.stem
    problem = name_problem(name, max_length=64)
    if problem:
        key = "key `name`" if recipe_file.name else f"the recipe name (the file name {path.name!r} without .yaml)"
        fix = "" if recipe_file.name else "; set `name:` or rename the file"
        raise HarnessError(f"{path}: {key}: the name {problem}{fix}")
    for axis, values in recipe_file.ablate.items():
        if not values:
            raise HarnessError(f"{path}: key `ablate.{axis}`: empty axis; give at least one value")
        _check_axis_path(path, axis, base_dict)
    arms = (math.prod(len(v) for v in recipe_file.ablate.values()) if recipe_file.mode == "grid"
            else sum(len(v) for v in recipe_file.ablate.values())) + len(recipe_file.variants)
    if arms > MAX_VARIANTS:
        raise HarnessError(f"{path}: key `ablate`: {arms} variants in {recipe_file.mode} mode; at most "
                           f"{MAX_VARIANTS} are allowed (split the recipe, or use mode: oneway)")
    for variant_name, overrides in recipe_file.variants.items():
        problem = name_problem(variant_name)
        if problem:
            raise HarnessError(f"{path}: key `variants`: the variant name {problem}")
        if variant_name == CONTROL_NAME:
            raise HarnessError(f"{path}: key `variants.{variant_name}`: the name {CONTROL_NAME!r} is the control")
        if not isinstance(overrides, dict):
            raise HarnessError(f"{path}: key `variants.{variant_name}`: must be a mapping of dotted config "
                               f"paths to values (got {type(overrides).__name__})")
        for dotted in overrides:
            _check_axis_path(path, dotted, base_dict)

    seeds = recipe_file.seeds or [base_config.train.seed]
    seed_scope: SeedScope = recipe_file.seed_scope or DEFAULT_SEED_SCOPE
    if seed_scope == "train+data":
        for arm, overrides in [("ablate", dict.fromkeys(recipe_file.ablate)), *recipe_file.variants.items()]:
            if "data.seed" in overrides:
                where = "ablate" if arm == "ablate" else f"variants.{arm}"
                raise HarnessError(f"{path}: key `{where}.data.seed`: with `seed_scope: train+data` each seed sets "
                                   "data.seed itself; ablate it with `seed_scope: train` instead")
    variants: list[Variant] = []
    seen_names: set[str] = set()
    seen_hashes: dict[str, str] = {}
    for arm, overrides in _expand(recipe_file, base_dict):
        if arm in seen_names:
            raise HarnessError(f"{path}: two variants are both named {arm!r}")
        seen_names.add(arm)
        try:
            config = VariantConfig.model_validate(_apply(base_dict, overrides))
        except ValidationError as exc:
            key = "ablate" if arm not in recipe_file.variants else f"variants.{arm}"
            raise HarnessError(pydantic_message(path, exc, "", VariantConfig).replace(
                f"{path}: ", f"{path}: {key} (variant {arm!r}): ", 1)) from None
        seedless = config.to_dict()
        seedless["train"].pop("seed")
        digest = content_hash(seedless)
        if digest in seen_hashes:
            raise HarnessError(
                f"{path}: variants {seen_hashes[digest]!r} and {arm!r} resolve to the same config"
            )
        seen_hashes[digest] = arm
        variants.append(Variant(name=arm, overrides=overrides, config=config, hash=digest, seed_scope=seed_scope))

    from harness.evaluate.resolve import check_names

    checked: set[str] = set()
    for variant in variants:
        key = repr(variant.config.eval)
        if key in checked:
            continue
        checked.add(key)
        try:
            check_names(variant.config.eval)
        except HarnessError as exc:
            raise HarnessError(f"{path}: key `eval` (variant {variant.name!r}): {exc}") from None

    return Recipe(
        name=name,
        path=path,
        description=recipe_file.description,
        mode=recipe_file.mode,
        seeds=seeds,
        seed_scope=seed_scope,
        base=base_config,
        axes=dict(recipe_file.ablate),
        variants=variants,
        overrides=cli_overrides,
    )
