"""The project's one table style: GitHub markdown (reports, the leaderboard, model cards, the terminal).

Cells are shown as given (numbers are formatted by the caller, so `0.10` stays `0.10`); the few
tables whose raw numbers should be right-aligned by tabulate ask for `parse_numbers=True`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def markdown_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, parse_numbers: bool = False) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=list(headers), tablefmt="github", disable_numparse=not parse_numbers)
