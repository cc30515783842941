"""Reading user YAML files (recipes, variant configs, task folders' task.yaml) with one set of guards.

A safe loader, so a file can never execute code; duplicate keys are errors; aliases that would
expand beyond `MAX_YAML_NODES` values (a "billion laughs" file) are rejected before anything is
expanded; and `1e-5` reads as a float. `pydantic_message` turns a validation error into one
message naming the file, every bad key and what is allowed there.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import HarnessError

# Limits far above any real recipe (KaLM's 70-dataset recipe has ~1,500 YAML values).
MAX_RECIPE_BYTES = 4 * 1024 * 1024
MAX_YAML_NODES = 50_000


class _DuplicateKey(yaml.MarkedYAMLError):
    """A mapping names the same key twice (PyYAML would silently keep the last one)."""


class _Loader(yaml.SafeLoader):
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


_Loader.add_implicit_resolver(
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


def read_yaml(path: Path, what: str = "recipe") -> dict[str, Any]:
    """A YAML mapping from a user file (`what` names it in messages), read with every guard: size,
    UTF-8, no NUL or control characters, no duplicate keys, no alias bombs, one clear error each."""
    if not path.is_file():
        problem = f"is a folder, not a {what} file" if path.is_dir() else f"{what} file not found"
        raise HarnessError(f"{path}: {problem}")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise HarnessError(f"{path}: {path.stat().st_size} bytes; a {what} may have at most "
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
                           f"a {what} must be a UTF-8 YAML file") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise HarnessError(f"{path}:{line}: contains a NUL character; a {what} must be a UTF-8 YAML text file")
    loader = None
    try:
        loader = _Loader(text)  # the reader rejects control characters already here
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
        raise HarnessError(f"{path}: YAML nested too deeply; a {what} needs only a few levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: a {what} must be a YAML mapping (got {type(data).__name__})")
    return data


def pydantic_message(path: Path, exc: ValidationError, prefix: str, model: type[BaseModel]) -> str:
    """One message for a pydantic error: every bad key, dotted from `prefix`, with what is allowed."""
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
            current = inner_model(fields[part].annotation)
    return sorted(getattr(current, "model_fields", {}).keys())


def parse_value(text: str) -> Any:
    """One YAML value read as a recipe would read it (`1e-5` a float, duplicate keys refused):
    command-line `key=value` overrides mean what the same text in a recipe means."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def inner_model(annotation: Any) -> Any:
    """The pydantic model inside a field annotation (`X | None`, `dict[str, X]`, ...), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = inner_model(arg)
        if inner is not None:
            return inner
    return None
