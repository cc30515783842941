"""Recipes: a YAML file of ablation axes over a base variant config.

Loading is strict and happens before any work: a bad recipe stops with one message naming the
file, the key and what is allowed, and nothing is written. YAML is read with a safe loader, so a
recipe can never execute code; duplicate keys are errors, and aliases that would expand beyond
`MAX_YAML_NODES` values (a "billion laughs" file) are rejected before anything is expanded.
Every name that becomes a folder (recipe, variants) is checked by `harness.paths.name_problem`.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator

from harness.config import MAX_SEED, VariantConfig
from harness.errors import HarnessError
from harness.hashing import content_hash
from harness.paths import NAME_MAX, name_problem

CONTROL_NAME = "base"
# Config paths whose children are free-form names (a new key there adds an entry).
OPEN_MAPPINGS = {("data", "sources")}
# Limits far above any real recipe (KaLM's 70-dataset recipe has ~1,500 YAML values).
MAX_RECIPE_BYTES = 4 * 1024 * 1024
MAX_YAML_NODES = 50_000
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

    def run_config(self, seed: int) -> VariantConfig:
        cfg = self.config.model_copy(deep=True)
        cfg.train.seed = seed
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
    overrides: dict[str, Any] = field(default_factory=dict)  # command-line key=value (harness/overrides.py)

    @property
    def control(self) -> Variant:
        return self.variants[0]


# ----------------------------------------------------------------------------- loading


class _DuplicateKey(yaml.MarkedYAMLError):
    """A mapping names the same key twice (PyYAML would silently keep the last one)."""


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` as a float (YAML 1.1 insists on `1.0e-5`) and rejects
    duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                seen = first.setdefault((key_node.tag, key_node.value), key_node.start_mark.line + 1)
                if seen != key_node.start_mark.line + 1:
                    raise _DuplicateKey(problem=f"duplicate key `{key_node.value}` (first on line {seen}); "
                                                "each key may appear once in a mapping",
                                        problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many values the document has once every alias is expanded, counted on the node graph
    (aliases share nodes, so this is cheap) and capped at `limit + 1`; a self-referencing alias
    counts as too big."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = limit + 1  # while being counted: a cycle back here is "too big"
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        sizes[id(node)] = min(total, limit + 1)
        return sizes[id(node)]

    return size(root)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        what = "is a folder, not a recipe file" if path.is_dir() else "recipe file not found"
        raise HarnessError(f"{path}: {what}")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise HarnessError(f"{path}: {path.stat().st_size} bytes; a recipe may have at most "
                           f"{MAX_RECIPE_BYTES // (1024 * 1024)} MiB")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise HarnessError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                           "a recipe must be a UTF-8 YAML file") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise HarnessError(f"{path}:{line}: contains a NUL character; a recipe must be a UTF-8 YAML text file")
    loader = None
    try:
        loader = _RecipeLoader(text)  # the reader rejects control characters already here
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise HarnessError(f"{path}: YAML aliases expand to more than {MAX_YAML_NODES} values (or refer to "
                               "themselves); rejected before expanding them")
        data = loader.construct_document(node) if node is not None else None
    except _DuplicateKey as exc:
        mark = exc.problem_mark
        raise HarnessError(f"{path}:{mark.line + 1}:{mark.column + 1}: {exc.problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise HarnessError(f"{path}:{line}: control character #x{exc.character:04x} is not allowed in YAML; remove "
                           "it (or write it as an escape such as \\x1e inside a double-quoted string)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise HarnessError(f"{where}: YAML syntax error: {problem}") from None
    except RecursionError:
        raise HarnessError(f"{path}: YAML nested too deeply; a recipe needs only a few levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: a recipe must be a YAML mapping (got {type(data).__name__})")
    return data


def _deep_merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _pydantic_message(path: Path, exc: ValidationError, prefix: str, model: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = ".".join([p for p in (prefix, *loc) if p])
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = difflib.get_close_matches(loc[-1], allowed, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            lines.append(f"unknown key `{key}`{did_you_mean}; allowed: {', '.join(allowed)}")
        else:
            got = err.get("input")
            text = repr(got) if len(repr(got)) <= 80 else repr(got)[:77] + "..."
            shown = f" (got {text})" if not isinstance(got, dict | list) else ""
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"key `{key}`: {message}{shown if err['type'] != 'value_error' else ''}")
    return f"{path}: " + ("\n  ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines))


def _allowed_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The field names valid at `loc` inside `model` (walks nested pydantic models)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None:
            return []
        if part in fields:  # else: a free-form mapping key (a source name) — stay on its value type
            current = _inner_model(fields[part].annotation)
    return sorted(getattr(current, "model_fields", {}).keys())


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    return None


def _load_raw(path: Path, seen: tuple[Path, ...] = ()) -> tuple[RecipeFile, dict[str, Any]]:
    """Read a recipe and its `extends` chain; return the child's schema and the merged base."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise HarnessError(f"{path}: key `extends`: cycle in recipe inheritance ({chain})")
    raw = _read_yaml(path)
    try:
        recipe_file = RecipeFile.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(_pydantic_message(path, exc, "", RecipeFile)) from None
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


_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._+=,@-]")


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
        text = _UNSAFE_CHAR.sub("_", str(value))
        if len(text) > VALUE_NAME_MAX:
            text = f"{text[:VALUE_NAME_MAX - 7]}-{content_hash(value, 6)}"
        return text
    return content_hash(value, 6)


def _generated_name(parts: list[str], overrides: dict[str, Any]) -> str:
    """A variant name from `axis=value` parts; too long a name keeps its start plus a hash."""
    name = _UNSAFE_CHAR.sub("_", ",".join(parts))
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
    from harness.references import register_recipe_dir

    from harness.overrides import apply_overrides, check_values, remember

    path = Path(path)
    cli_overrides = dict(overrides or {})
    recipe_file, base = _load_raw(path)
    remember(path, cli_overrides)
    if cli_overrides:

        edited = apply_overrides(base, cli_overrides, VariantConfig)
        check_values(base, edited, cli_overrides, VariantConfig, f"base of {path}")
        base = edited
    register_recipe_dir(path.parent)
    try:
        base_config = VariantConfig.model_validate(base)
    except ValidationError as exc:
        raise HarnessError(_pydantic_message(path, exc, "base", VariantConfig)) from None
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
            raise HarnessError(_pydantic_message(path, exc, "", VariantConfig).replace(
                f"{path}: ", f"{path}: {key} (variant {arm!r}): ", 1)) from None
        seedless = config.to_dict()
        seedless["train"].pop("seed")
        digest = content_hash(seedless)
        if digest in seen_hashes:
            raise HarnessError(
                f"{path}: variants {seen_hashes[digest]!r} and {arm!r} resolve to the same config"
            )
        seen_hashes[digest] = arm
        variants.append(Variant(name=arm, overrides=overrides, config=config, hash=digest))

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
        base=base_config,
        axes=dict(recipe_file.ablate),
        variants=variants,
        overrides=cli_overrides,
    )
