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


def lengths_markdown(recipe_dir: Path) -> list[str]:
    """What the model sees: each variant's token lengths (first seed: lengths do not depend on it);
    variants after the control show only the rows that differ from it."""
    from harness.text_table import markdown_table

    from harness.report.formatting import table_rows

    by_variant: dict[str, dict[str, Any]] = {}
    for seed_dir, _ in _runs(recipe_dir):
        path = seed_dir / "lengths.json"
        if path.is_file() and seed_dir.parent.name not in by_variant:
            try:
                by_variant[seed_dir.parent.name] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
    if not by_variant:
        return []
    order = sorted(by_variant, key=lambda v: (v != "base", v))
    shown: set[str] = set()
    seen_warnings: set[str] = set()
    rows, notes = [], []
    for variant in order:
        lengths = by_variant[variant]
        for row in table_rows(lengths):
            if repr(row) not in shown:
                rows.append([variant, *row])
        shown.update(repr(r) for r in table_rows(lengths))
        notes += [f"- {variant}: {w}" for w in lengths.get("warnings", []) if w not in seen_warnings]
        seen_warnings.update(lengths.get("warnings", []))
    lines = ["## What the model sees", "",
             "Tokens per text with each variant's own tokenizer (training: the rows it trained on, per source; "
             "eval: each task's queries and corpus, a seeded sample of at most 2000 texts per side). `cut` = share "
             "longer than the limit, which truncates them. Variants after `base` list only rows that differ.", "",
             markdown_table(rows, ["variant", "", "source / task", "side", "limit", "median", "p95", "cut",
                                   "measured"], parse_numbers=True), ""]
    if notes:
        lines += ["Warnings (more than 5% of a side cut):", "", *notes, ""]
    return lines


def cockpit_sections(recipe_dir: Path) -> list[str]:
    """Every cockpit section of report.md, in order (each is empty when its data is missing)."""
    from harness.report.curves import curves_markdown

    return [*curves_markdown(recipe_dir), *estimates_markdown(recipe_dir), *overrides_markdown(recipe_dir),
            *lengths_markdown(recipe_dir)]


def estimates_markdown(recipe_dir: Path) -> list[str]:
    """Estimate (written by ablate before the runs) beside actual, per run."""
    from harness.report.formatting import duration

    rows = []
    for seed_dir, _ in _runs(recipe_dir):
        path, summary = seed_dir / "estimate.json", seed_dir / "train_summary.json"
        if not (path.is_file() and summary.is_file()):
            continue
        try:
            est = json.loads(path.read_text(encoding="utf-8"))
            actual_train = float(json.loads(summary.read_text(encoding="utf-8"))["train_seconds"])
        except (ValueError, KeyError, TypeError):
            continue
        actual_eval = 0.0
        for task_file in (seed_dir / "mteb").glob("*.json"):
            try:
                actual_eval += float(json.loads(task_file.read_text(encoding="utf-8")).get("evaluation_time") or 0)
            except (ValueError, AttributeError):
                continue
        ratio = (f"{actual_train / est['train_seconds']:.2f}" if est.get("train_seconds") else "–")
        rows.append(f"| {seed_dir.parent.name} | {seed_dir.name} | {est['train_tokens']:.0f} | "
                    f"{duration(est.get('train_seconds'))} | {duration(actual_train)} | {ratio} | "
                    f"{duration(est.get('eval_seconds'))} | {duration(actual_eval) if actual_eval else '–'} | "
                    f"{est.get('throughput_source', '')} |")
    if not rows:
        return []
    return ["## Estimate vs actual", "",
            "The compute estimate `ablate` printed before the runs (harness/estimates.py) beside what they took. "
            "Train actual: the training loop's wall time; eval actual: mteb's evaluation_time summed over tasks. "
            "A run whose stages were cached shows the time of the run that built them.", "",
            "| variant | seed | training tokens | train est. | train actual | actual/est. | eval est. | "
            "eval actual | throughput |", "|---|---|---|---|---|---|---|---|---|", *rows, ""]
