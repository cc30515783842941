"""report.md sections about how the runs were made: command-line overrides of the recipe (and,
from the other cockpit modules, lengths, estimates and training curves), read from run.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _runs(recipe_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(recipe_dir.glob("*/seed-*/run.json")):
        try:
            out.append((path.parent, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue  # the report's loaders already list unreadable runs
    return out


def overrides_markdown(recipe_dir: Path) -> list[str]:
    """One line per distinct set of command-line overrides the runs were made with (none: nothing)."""
    from harness.overrides import overrides_text

    seen: dict[str, list[str]] = {}
    for seed_dir, run in _runs(recipe_dir):
        if run.get("overrides"):
            seen.setdefault(overrides_text(run["overrides"]), []).append(f"{seed_dir.parent.name}/{seed_dir.name}")
    if not seen:
        return []
    lines = ["## Command-line overrides", "",
             "These runs were made with `key=value` overrides of the recipe's base (as if the YAML said so):", ""]
    lines += [f"- `{text}` ({len(runs)} run(s))" for text, runs in seen.items()]
    return [*lines, ""]


def cockpit_sections(recipe_dir: Path) -> list[str]:
    """Every cockpit section of report.md, in order (each is empty when its data is missing)."""
    return overrides_markdown(recipe_dir)
