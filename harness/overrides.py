"""Command-line `key=value` overrides of a recipe's base (or a variant config), applied as a YAML edit.

`python -m harness ablate RECIPE train.lr=1e-4 eval.tasks=[A,B]` sets dotted keys in the base
mapping *before* it is validated, so an override is checked exactly like the YAML (an unknown key
names the section and its allowed keys; a bad value names the key and what is allowed) and changes
every hash exactly as editing the YAML would. Values are read with the recipe's own YAML loader:
`1e-4` is a float, `[A, B]` a list, `null` None, `true` a bool.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

from pydantic import BaseModel

from harness.errors import HarnessError
from harness.yamlio import inner_model

OVERRIDE_HELP = ("dotted config overrides applied to the base before validation, YAML-typed: "
                 "train.lr=1e-4 eval.tasks=[HarnessCodeRetrieval] data.sources.stdlib-code.weight=0.5")


def is_override(arg: str) -> bool:
    """An argument of the form `dotted.key=value` (a recipe path never contains `=` before a dot)."""
    key, sep, _ = arg.partition("=")
    return bool(sep) and bool(key) and "/" not in key and not key.startswith("-")


def _yaml_value(text: str, item: str) -> Any:
    import yaml

    from harness.yamlio import parse_value

    if text == "":
        return ""
    try:
        return parse_value(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise HarnessError(f"override {item!r}: the value is not valid YAML ({problem}); quote strings "
                           "with commas or colons, e.g. 'key=\"a: b\"'") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["train.lr=1e-4", ...]` -> `{"train.lr": 0.0001, ...}`; the last of a repeated key wins."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise HarnessError(f"override {item!r}: expected dotted.key=value, e.g. train.lr=1e-4")
        out[key] = _yaml_value(text.strip(), item)
    return out


def _is_mapping(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    return origin is dict or any(_is_mapping(a) for a in getattr(annotation, "__args__", ()) or ()
                                 if a is not type(None) and getattr(a, "__origin__", None) is not list)


def check_key(dotted: str, schema: type[BaseModel]) -> None:
    """Raise one error if `dotted` is not a key of `schema` (free-form mappings such as
    data.sources.<name> accept any name, then their value's keys)."""
    current: type[BaseModel] | None = schema
    parts = dotted.split(".")
    free = False  # the previous part was a free-form mapping: this part is a name
    for depth, part in enumerate(parts):
        if free:
            free = False
            continue
        if current is None:
            where = ".".join(parts[:depth])
            raise HarnessError(f"override `{dotted}`: `{where}` is a value, not a section; "
                               f"set it as {where}=VALUE")
        fields = current.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            allowed = sorted(fields)
            hint = difflib.get_close_matches(part, allowed, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise HarnessError(f"override `{dotted}`: unknown key `{part}` under {where}{did_you_mean}; "
                               f"allowed: {', '.join(allowed)}")
        annotation = fields[part].annotation
        free = _is_mapping(annotation)
        current = inner_model(annotation)


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any], schema: type[BaseModel]) -> dict[str, Any]:
    """A copy of `base` with every override set (a missing or null section becomes a mapping)."""
    resolved = copy.deepcopy(base)
    for dotted, value in overrides.items():
        check_key(dotted, schema)
        node = resolved
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = copy.deepcopy(value)
    return resolved


def overrides_text(overrides: dict[str, Any]) -> str:
    """`key=value` as typed back on a command line (for logs, run.json and the report)."""
    import json

    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items())


def check_values(before: dict[str, Any], after: dict[str, Any], overrides: dict[str, Any],
                 schema: type[BaseModel], where: str) -> None:
    """If the overrides turn a valid config invalid: one error per problem, naming the override and
    what is allowed. A file that is invalid by itself is left to the caller's validation (which
    names the file's key)."""
    from pydantic import ValidationError

    try:
        schema.model_validate(after)
        return
    except ValidationError as exc:
        errors = exc.errors()
    try:
        schema.model_validate(before)
    except ValidationError:
        return
    lines = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"])
        keys = [k for k in overrides if loc == k or loc.startswith(k + ".") or k.startswith(loc + ".") or not loc]
        got = err.get("input")
        shown = f" (got {got!r})" if not isinstance(got, dict | list) and err["type"] != "value_error" else ""
        named = ", ".join(f"`{k}={overrides[k]}`" for k in keys or overrides)
        lines.append(f"override {named} ({where}): key `{loc or '<config>'}`: "
                     f"{err['msg'].removeprefix('Value error, ')}{shown}")
    raise HarnessError("\n  ".join(lines))
