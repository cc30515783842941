"""Plots where a picture beats a table: score vs axis value with CI bars, and a Δ heatmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness import atomic


def _figure():  # matplotlib without a display, imported only when a report is drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    import io

    buffer = io.BytesIO()
    # no timestamp in the PNG metadata: same results, same bytes
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    atomic.write_bytes(path, buffer.getvalue())
    return path


def axis_plot(axis: str, points: pd.DataFrame, path: Path) -> Path:
    """`points`: columns value (axis value, as label), task, score, low, high (x100), and variant.

    Two variants with the same axis value (a stale copy beside the current folder) get labels
    `value (variant)`, so each keeps its own point instead of breaking the plot."""
    points = _unique_labels(points)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = list(dict.fromkeys(points["value"]))
    x = np.arange(len(labels))
    for task, frame in points.groupby("task", sort=True):
        frame = frame.set_index("value").reindex(labels)
        err = np.vstack([frame["score"] - frame["low"], frame["high"] - frame["score"]])
        ax.errorbar(x, frame["score"], yerr=np.nan_to_num(err), marker="o", capsize=4, label=task)
    ax.set_xticks(x, labels)
    ax.set_xlabel(axis)
    ax.set_ylabel("per-unit metric x100 (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = _save(fig, path)
    plt.close(fig)
    return path


def _unique_labels(points: pd.DataFrame) -> pd.DataFrame:
    if "variant" not in points.columns or points.empty:
        return points
    per_value = points.groupby("value")["variant"].nunique()
    shared = set(per_value[per_value > 1].index)
    if not shared:
        return points
    points = points.copy()
    points["value"] = [f"{value} ({variant})" if value in shared else value
                       for value, variant in zip(points["value"], points["variant"], strict=True)]
    return points


def delta_heatmap(deltas: pd.DataFrame, path: Path) -> Path:
    """Variant x task heatmap of Δ vs the control (x100), diverging around zero."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * deltas.shape[1], 0.9 + 0.45 * deltas.shape[0]))
    bound = float(np.nanmax(np.abs(deltas.to_numpy()))) or 1.0
    image = ax.imshow(deltas.to_numpy(), cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(deltas.shape[1]), deltas.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(deltas.shape[0]), deltas.index, fontsize=8)
    for (i, j), value in np.ndenumerate(deltas.to_numpy()):
        if not np.isnan(value):
            ax.text(j, i, f"{value:+.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(value) > bound / 2 else "black")
    fig.colorbar(image, ax=ax, label="Δ vs base (x100)")
    path = _save(fig, path)
    plt.close(fig)
    return path


def interaction_plot(axis_a: str, levels_a: list[str], axis_b: str, levels_b: list[str],
                     means: dict[tuple[str, str], float], path: Path) -> Path:
    """Mean(Task) (x100) against the levels of ``axis_a``, one line per level of ``axis_b``: parallel
    lines = no interaction. ``means[(a, b)]`` averages the other axes' levels."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    x = np.arange(len(levels_a))
    for level_b in levels_b:
        ax.plot(x, [means[(a, level_b)] for a in levels_a], marker="o", label=f"{axis_b}={level_b}")
    ax.set_xticks(x, levels_a)
    ax.set_xlabel(axis_a)
    ax.set_ylabel("Mean(Task) of per-unit metric x100")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = _save(fig, path)
    plt.close(fig)
    return path
