"""Plain-text pieces the report, the dry-run and model cards print alike: durations, SI-scaled
counts and the token-length table. Pure functions: no model, no task, no I/O."""

from __future__ import annotations

from typing import Any


def si(value: float | None, unit: str = "") -> str:
    """1.23e10 -> '12.30 G' (+ unit); None -> '?'."""
    if value is None:
        return "?"
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}".rstrip()
    return f"{value:.0f} {unit}".rstrip()


def duration(seconds: float | None) -> str:
    """Seconds as s / min / h, whichever reads best; None -> '?'."""
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table_rows(lengths: dict[str, Any]) -> list[list[Any]]:
    """[kind, name, side, limit, median, p95, cut %, measured/all] rows for a table."""
    rows = []
    for kind in ("training", "eval"):
        for name, entry in (lengths.get(kind) or {}).items():
            if "error" in entry:
                rows.append([kind, name, "–", "–", "–", "–", "–", entry["error"]])
                continue
            for side, stats in entry.items():
                if isinstance(stats, dict):
                    rows.append([kind, name, side, stats["limit"], stats["median"], stats["p95"],
                                 f"{100 * stats['cut_share']:.1f}%", f"{stats['texts']}/{stats['population']}"])
    return rows
