"""The comparison table: variant x task, each variant's difference from the control."""

from __future__ import annotations

import pandas as pd
from harness.text_table import markdown_table

from harness.paths import CONTROL_NAME


def variant_task_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean main score over seeds, x100, one row per variant, one column per task, plus Mean(Task)."""
    table = scores.pivot_table(index="variant", columns="task", values="main_score", aggfunc="mean") * 100
    table["Mean(Task)"] = table.mean(axis=1)
    return table


def control_first(variants: list[str], first: str = CONTROL_NAME) -> list[str]:
    return ([first] if first in variants else []) + sorted(v for v in variants if v != first)


def comparison_markdown(scores: pd.DataFrame, control: str = CONTROL_NAME) -> str:
    """Markdown table: score (Δ vs control) per cell; the control row shows plain scores."""
    table = variant_task_means(scores)
    seeds = scores.groupby("variant")["seed"].nunique()
    order = control_first(list(table.index), control)
    headers = ["variant", "seeds", *table.columns]
    rows = []
    for variant in order:
        cells = [variant, int(seeds[variant])]
        for task in table.columns:
            value = table.at[variant, task]
            if pd.isna(value):
                cells.append("–")
            elif variant == control or control not in table.index:
                cells.append(f"{value:.2f}")
            else:
                delta = value - table.at[control, task]
                cells.append(f"{value:.2f} ({delta:+.2f})")
        rows.append(cells)
    return markdown_table(rows, headers)
