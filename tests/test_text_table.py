"""The one table style (harness.text_table): every table the harness writes goes through it."""

from __future__ import annotations

import re
from pathlib import Path

from harness.text_table import markdown_table

HARNESS = Path(__file__).resolve().parents[1] / "harness"


def test_github_markdown_with_cells_as_given_unless_numbers_are_parsed() -> None:
    table = markdown_table([["a", "0.10"], ["bb", "12"]], ["name", "score"])
    assert table.splitlines() == ["| name   | score   |", "|--------|---------|", "| a      | 0.10    |",
                                  "| bb     | 12      |"]
    parsed = markdown_table([["a", "0.10"], ["bb", "12"]], ["name", "score"], parse_numbers=True)
    assert parsed.splitlines()[2:] == ["| a      |     0.1 |", "| bb     |    12   |"]  # right-aligned, 0.10 -> 0.1


def test_no_other_module_calls_tabulate() -> None:
    users = sorted(str(path.relative_to(HARNESS)) for path in HARNESS.rglob("*.py")
                   if path.name != "text_table.py" and re.search(r"^\s*(from tabulate|import tabulate)",
                                                                  path.read_text(encoding="utf-8"), re.MULTILINE))
    assert users == []
