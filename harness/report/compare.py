"""One recipe's comparison: variant x task table with Δ vs the control, written as markdown."""

from __future__ import annotations

from pathlib import Path

from harness import atomic
from harness.errors import HarnessError
from harness.report.results import load_scores
from harness.report.tables import comparison_markdown


def write_comparison(recipe_dir: Path) -> tuple[str, Path]:
    scores = load_scores(recipe_dir)
    if scores.empty:
        raise HarnessError(f"{recipe_dir}: no scores found (expected <variant>/seed-N/scores.json)")
    table = comparison_markdown(scores)
    text = (f"# {recipe_dir.name}: comparison\n\nMain score x100 per task, mean over seeds; "
            f"in parentheses the difference from the control (`base`).\n\n{table}\n")
    return table, atomic.write_text(recipe_dir / "comparison.md", text)
