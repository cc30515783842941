"""The report's training-curves figure, from each run's local `train_log.jsonl` (no tracker needed).

Left: loss vs step per arm, each seed a thin line and the arms' mean over seeds thick. Right:
throughput (examples/s per log interval; older logs without it: the run's average from
train_summary.json as a flat line), same drawing. Written to plots/training_curves.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report.plots import _figure, _save

FIGURE = "training_curves.png"


def load_logs(recipe_dir: Path) -> pd.DataFrame:
    """One row per logged step: variant, seed, step, loss, examples_per_second, tokens_per_second."""
    rows: list[dict[str, Any]] = []
    for path in sorted(recipe_dir.glob("*/seed-*/train_log.jsonl")):
        seed_dir = path.parent
        try:
            seed = int(seed_dir.name.removeprefix("seed-"))
            entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (ValueError, OSError):
            continue  # the report's loaders list unreadable runs
        average = None
        summary = seed_dir / "train_summary.json"
        if summary.is_file():
            try:
                average = json.loads(summary.read_text(encoding="utf-8")).get("examples_per_second")
            except ValueError:
                average = None
        for e in entries:
            if "step" in e and "loss" in e:
                rows.append({"variant": seed_dir.parent.name, "seed": seed, "step": int(e["step"]),
                             "loss": float(e["loss"]),
                             "examples_per_second": e.get("examples_per_second", average),
                             "tokens_per_second": e.get("tokens_per_second"),
                             "grad_norm": e.get("grad_norm")})
    return pd.DataFrame(rows, columns=["variant", "seed", "step", "loss", "examples_per_second",
                                       "tokens_per_second", "grad_norm"])


def curves_figure(logs: pd.DataFrame, path: Path) -> Path:
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    order = sorted(logs["variant"].unique(), key=lambda v: (v != "base", v))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (ax, column, label) in ((axes[0], "loss", "training loss"),
                                (axes[1], "examples_per_second", "examples / s")):
        for i, variant in enumerate(order):
            color = colors[i % len(colors)]
            arm = logs[logs["variant"] == variant].dropna(subset=[column])
            for _, seed_rows in arm.groupby("seed"):
                seed_rows = seed_rows.sort_values("step")
                ax.plot(seed_rows["step"], seed_rows[column].astype(float), color=color, linewidth=0.7, alpha=0.5)
            mean = arm.groupby("step")[column].mean()
            if not mean.empty:
                ax.plot(mean.index, mean.values, color=color, linewidth=2.2, label=variant)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    axes[0].set_title("loss per arm (thin: seeds, thick: mean)", fontsize=9)
    axes[1].set_title("throughput per arm", fontsize=9)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def curves_markdown(recipe_dir: Path) -> list[str]:
    """The figure and a one-line-per-arm summary, or nothing when no run has a log."""
    logs = load_logs(recipe_dir)
    if logs.empty:
        return []
    curves_figure(logs, recipe_dir / "plots" / FIGURE)
    last = logs.sort_values("step").groupby(["variant", "seed"]).tail(1)
    rows = []
    for variant in sorted(logs["variant"].unique(), key=lambda v: (v != "base", v)):
        arm, final = logs[logs["variant"] == variant], last[last["variant"] == variant]
        eps = arm["examples_per_second"].dropna()
        tps = arm["tokens_per_second"].dropna()
        rows.append(f"| {variant} | {arm['seed'].nunique()} | {int(arm['step'].max())} | "
                    f"{final['loss'].mean():.4f} | {eps.astype(float).mean():.1f} | "
                    f"{tps.astype(float).mean():.0f} |" if not tps.empty else
                    f"| {variant} | {arm['seed'].nunique()} | {int(arm['step'].max())} | "
                    f"{final['loss'].mean():.4f} | {eps.astype(float).mean():.1f} | – |")
    return ["## Training curves", "",
            "From each run's `train_log.jsonl`: loss vs step per arm (thin lines: seeds; thick: their mean) and "
            "throughput per log interval.", "", f"![training curves](plots/{FIGURE})", "",
            "| variant | seeds | steps | final loss (mean) | examples/s (mean) | tokens/s (mean) |",
            "|---|---|---|---|---|---|", *rows, ""]
