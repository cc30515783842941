"""Read results/ back: the small JSON/parquet files are the only input of reports.

Results folders are edited, copied and half-synced by people, so nothing here trusts them: a run
folder that cannot be read (bad JSON, a `seed-x` name, missing keys, a non-finite score, an
unreadable parquet, a copy nested one level too deep) is skipped and listed with the reason,
never a crash, so one broken folder cannot stop `leaderboard`, `report` or the end of `ablate`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

# `subsets`: the task's evaluated subsets, comma-joined (eval.languages or a benchmark may keep a slice)
SCORE_COLUMNS = ["recipe", "variant", "seed", "task", "type", "main_metric", "main_score", "subsets"]
UNIT_COLUMNS = {"task", "metric", "value", "subset", "split", "unit"}
_SEED = re.compile(r"seed-(\d+)")


@dataclass(frozen=True)
class Skipped:
    """A results file or folder left out of a report, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Run:
    """One readable `<recipe>/<variant>/seed-N/` with its parsed scores.json."""

    recipe: str
    variant: str
    seed: int
    folder: Path
    scores: dict[str, Any]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _scores_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        return "no `tasks` mapping"
    for task, entry in data["tasks"].items():
        if not isinstance(entry, dict):
            return f"task {task!r} is not a mapping"
        for key in ("type", "main_metric"):
            if not isinstance(entry.get(key), str):
                return f"task {task!r} has no `{key}`"
        if not _number(entry.get("main_score")):
            return f"task {task!r}: `main_score` is not a finite number ({entry.get('main_score')!r})"
        subsets = entry.get("subsets", {})
        if not isinstance(subsets, dict) or not all(isinstance(v, dict) and _number(v.get("main_score"))
                                                    for v in subsets.values()):
            return f"task {task!r}: `subsets` must map subset names to scores"
    return None


def read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"


def scan(root: Path, *, recipe_level: bool | None = None) -> tuple[list[Run], list[Skipped]]:
    """Every readable run under `root`, and what was skipped.

    `root` is a results root (`<recipe>/<variant>/seed-N/scores.json`, `recipe_level=False`) or one
    recipe's folder (`<variant>/seed-N/scores.json`, `recipe_level=True`); None accepts both.
    """
    runs: list[Run] = []
    skipped: list[Skipped] = []
    seen: dict[tuple[str, str, int], Path] = {}
    depths = {3, 4} if recipe_level is None else {3 if recipe_level else 4}
    nested: dict[Path, int] = {}
    for path in sorted(root.rglob("scores.json")):
        parts = path.relative_to(root).parts
        folder = path.parent
        if len(parts) not in depths:
            if len(parts) > max(depths) and _SEED.fullmatch(parts[-2]):
                top = root.joinpath(*parts[: len(parts) - max(depths)])
                nested[top] = nested.get(top, 0) + 1
            continue
        seed_match = _SEED.fullmatch(parts[-2])
        if seed_match is None:
            skipped.append(Skipped(folder, "folder name is not seed-<integer>"))
            continue
        recipe = parts[0] if len(parts) == 4 else root.resolve().name
        key = (recipe, parts[-3], int(seed_match.group(1)))
        if key in seen:
            skipped.append(Skipped(folder, f"duplicate of {seen[key]} (same recipe, variant and seed)"))
            continue
        data, problem = read_json(path)
        problem = problem or _scores_problem(data)
        if problem:
            skipped.append(Skipped(path, problem))
            continue
        seen[key] = folder
        runs.append(Run(recipe=key[0], variant=key[1], seed=key[2], folder=folder, scores=data))
    expected = "<variant>/seed-N" if recipe_level else "<recipe>/<variant>/seed-N"
    for top, count in sorted(nested.items()):
        skipped.append(Skipped(top, f"{count} run folder(s) nested below {expected}/ (a copy of results?); "
                                    "move them to their own results root to compare them"))
    return runs, skipped


def load_scores(root: Path, *, skipped: list[Skipped] | None = None,
                recipe_level: bool | None = None) -> pd.DataFrame:
    """Main scores of every readable run under `root` (see `scan`); unreadable runs are appended
    to `skipped` when given."""
    runs, problems = scan(root, recipe_level=recipe_level)
    if skipped is not None:
        skipped.extend(problems)
    rows = [(run.recipe, run.variant, run.seed, task, s["type"], s["main_metric"], float(s["main_score"]),
             ",".join(sorted(s.get("subsets") or {})))
            for run in runs for task, s in sorted(run.scores["tasks"].items())]
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def load_units(recipe_dir: Path, *, skipped: list[Skipped] | None = None) -> dict[tuple[str, int], pd.DataFrame]:
    """(variant, seed) -> per-unit scores of every readable run of one recipe."""
    out: dict[tuple[str, int], pd.DataFrame] = {}
    runs, _ = scan(recipe_dir, recipe_level=True)
    for run in runs:
        path = run.folder / "units.parquet"
        if not path.is_file():
            continue
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
            if skipped is not None:
                skipped.append(Skipped(path, f"not a readable parquet file ({type(exc).__name__})"))
            continue
        if not UNIT_COLUMNS <= set(frame.columns):
            if skipped is not None:
                skipped.append(Skipped(path, f"missing column(s) {sorted(UNIT_COLUMNS - set(frame.columns))}"))
            continue
        out[(run.variant, run.seed)] = frame
    return out


def load_variant_configs(recipe_dir: Path, *, skipped: list[Skipped] | None = None) -> dict[str, dict[str, Any]]:
    """variant -> its config.yaml (`overrides`, `config`, `variant_hash`), for readable files."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for path in sorted(recipe_dir.glob("*/config.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            if skipped is not None:
                skipped.append(Skipped(path, f"not readable YAML ({type(exc).__name__})"))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("overrides") or {}, dict):
            if skipped is not None:
                skipped.append(Skipped(path, "not a variant config (expected `overrides` and `config`)"))
            continue
        out[path.parent.name] = {"overrides": data.get("overrides") or {},
                                 "config": data.get("config") if isinstance(data.get("config"), dict) else {},
                                 "variant_hash": data.get("variant_hash")}
    return out


def duplicate_variants(configs: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings for variant folders with the same config: one is likely left from an older recipe."""
    by_hash: dict[str, list[str]] = {}
    for variant, entry in sorted(configs.items()):
        if entry.get("variant_hash"):
            by_hash.setdefault(str(entry["variant_hash"]), []).append(variant)
    return [f"variants {', '.join(repr(v) for v in names)} have the same config (variant hash {digest}); "
            "all but one are probably left over from an earlier version of the recipe"
            for digest, names in sorted(by_hash.items()) if len(names) > 1]


def skipped_markdown(skipped: list[Skipped], root: Path) -> list[str]:
    """A markdown section listing what a report left out (empty when nothing was)."""
    if not skipped:
        return []
    lines = ["## Skipped result files", "", "These could not be read and are not part of the tables above:", ""]
    for item in skipped:
        try:
            shown = item.path.relative_to(root)
        except ValueError:
            shown = item.path
        lines.append(f"- `{shown}`: {item.reason}")
    return [*lines, ""]


def config_value(config: Any, dotted: str) -> Any:
    """The value at a dotted path (an ablation axis) of a published variant config; None where absent."""
    from collections.abc import Mapping

    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
