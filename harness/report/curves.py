"""The report's training-curves figure, from each run's local `train_log.jsonl` (no tracker needed).

Left: loss vs step per arm, each seed a thin line and the arms' mean over seeds thick. Right:
throughput (examples/s per log interval; older logs without it: the run's average from
train_summary.json as a flat line), same drawing. When a log holds the loss's terms (`loss/mrl_<d>`,
`loss/infonce`: harness.train.loss.LossTerms), a third panel draws each arm's mean over seeds of
each term, one line style per term (`loss/focal` is the loss itself and is left out). Written to
plots/training_curves.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report.plots import _figure, _save

FIGURE = "training_curves.png"


COLUMNS = ["variant", "seed", "step", "loss", "examples_per_second", "tokens_per_second", "grad_norm"]
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1, 1, 1)))


def term_columns(logs: pd.DataFrame) -> list[str]:
    """The loss-term columns a set of logs holds (Matryoshka prefixes largest first, then infonce)."""
    terms = [c for c in logs.columns if c.startswith("loss/") and c != "loss/focal" and logs[c].notna().any()]
    return sorted(terms, key=lambda c: (not c.startswith("loss/mrl_"),
                                        -int(c.rsplit("_", 1)[1]) if c.startswith("loss/mrl_") else 0, c))


def load_logs(recipe_dir: Path) -> pd.DataFrame:
    """One row per logged step: variant, seed, step, loss, examples_per_second, tokens_per_second,
    grad_norm, and any `loss/<term>` the log holds."""
    rows: list[dict[str, Any]] = []
    terms: set[str] = set()
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
                             "grad_norm": e.get("grad_norm"),
                             **{k: float(v) for k, v in e.items() if k.startswith("loss/") and v is not None}})
                terms.update(k for k in e if k.startswith("loss/"))
    return pd.DataFrame(rows, columns=COLUMNS + sorted(terms))


def curves_figure(logs: pd.DataFrame, path: Path) -> Path:
    plt = _figure()
    terms = term_columns(logs)
    fig, axes = plt.subplots(1, 3 if terms else 2, figsize=(15 if terms else 10, 3.6))
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
    if terms:
        _terms_panel(axes[2], logs, terms, order, colors)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _terms_panel(ax: Any, logs: pd.DataFrame, terms: list[str], order: list[str], colors: list[str]) -> None:
    """Each arm's mean over seeds of each loss term: arm by colour, term by line style."""
    for i, variant in enumerate(order):
        arm = logs[logs["variant"] == variant]
        for j, term in enumerate(terms):
            mean = arm.dropna(subset=[term]).groupby("step")[term].mean()
            if not mean.empty:
                ax.plot(mean.index, mean.values, color=colors[i % len(colors)], linewidth=1.0,
                        linestyle=LINESTYLES[j % len(LINESTYLES)])
    for j, term in enumerate(terms):  # legend: the line style of each term
        ax.plot([], [], color="0.3", linewidth=1.0, linestyle=LINESTYLES[j % len(LINESTYLES)],
                label=term.removeprefix("loss/"))
    ax.legend(fontsize=7, loc="best")
    ax.set_xlabel("step")
    ax.set_ylabel("loss term (weight-free)")
    ax.grid(alpha=0.3)
    ax.set_title("loss terms per arm (mean over seeds)", fontsize=9)


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
            "throughput per log interval" + ("; and each loss term (Matryoshka prefix `mrl_<d>`, weight-free; "
                                              "`infonce`: the loss before focal re-weighting) per arm, mean over seeds."
                                              if term_columns(logs) else "."), "", f"![training curves](plots/{FIGURE})", "",
            "| variant | seeds | steps | final loss (mean) | examples/s (mean) | tokens/s (mean) |",
            "|---|---|---|---|---|---|", *rows, ""]
