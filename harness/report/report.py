"""`results/<recipe>/report.md`: tables, named statistical tests, per-language breakdown, plots.

Reads only results/ files, so a report can be regenerated anywhere from a copy of them.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from harness.text_table import markdown_table

from harness import atomic
from harness.errors import HarnessError
from harness.paths import CONTROL_NAME
from harness.report import families, power
from harness.report.aggregates import MISSING_RULE, mean_task_type_and_borda
from harness.report.cockpit import cockpit_sections
from harness.report.factorial_section import factorial_lines
from harness.report.paired import paired_bootstrap_ci
from harness.report.plots import axis_plot, delta_heatmap
from harness.report.results import config_value, duplicate_variants, scan, skipped_markdown
from harness.report.significance import RecipeData, TaskArms, TaskComparison, compare_recipe, load_recipe
from harness.report.tables import comparison_markdown, control_first, variant_task_means

#: Resamples for the plots' error bars only (no p-value is read off them): 2,000 keep the CIs' ends
#: stable to a few % of their width; the tests use ``families.resamples_for_family``.
PLOT_RESAMPLES = 2000


def _fmt(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _p_floor(value: float) -> str:
    """A smallest attainable p, to two significant digits (it is often below 0.001)."""
    return "–" if value is None or math.isnan(value) else f"{value:.2g}"


def _unit_means(data: RecipeData) -> pd.DataFrame:
    """Per variant and task: mean of the task's per-unit metric (seed-averaged) with a bootstrap CI."""
    rows = []
    for task, entry in data.tasks.items():
        if not isinstance(entry, TaskArms) or entry.kind != "mean":
            continue
        for variant, matrix in sorted(entry.scores.items()):
            values = matrix.mean(axis=0)
            ci = paired_bootstrap_ci(np.zeros_like(values), values, n_resamples=PLOT_RESAMPLES)
            rows.append((variant, task, entry.metric, 100 * ci.estimate, 100 * ci.low, 100 * ci.high))
    return pd.DataFrame(rows, columns=["variant", "task", "metric", "score", "low", "high"])


def _per_language(recipe_dir: Path, order: list[str]) -> list[str]:
    """Subset (language pair) scores for multilingual tasks, mean over seeds."""
    records = []
    for run in scan(recipe_dir, recipe_level=True)[0]:  # readable runs only
        variant = run.variant
        for task, s in run.scores["tasks"].items():
            if len(s["subsets"]) > 1:
                for subset, values in s["subsets"].items():
                    records.append((task, variant, subset, 100 * values["main_score"]))
    if not records:
        return []
    frame = pd.DataFrame(records, columns=["task", "variant", "subset", "score"])
    lines = ["## Per-language breakdown", ""]
    for task, part in frame.groupby("task", sort=True):
        table = part.pivot_table(index="variant", columns="subset", values="score", aggfunc="mean")
        table = table.reindex([v for v in order if v in table.index])
        lines += [f"### {task} (main score x100 per subset)", "",
                  markdown_table([[v, *(_fmt(x) for x in table.loc[v])] for v in table.index], ["variant", *table.columns]), ""]
    return lines


def _floors_text(comparisons: list[TaskComparison], summary: dict[str, Any]) -> str:
    """Which resample count ran, and the smallest p each kind of test could reach, raw and after Holm."""
    b, m = summary["n_resamples"], summary["family_size"]
    floors = sorted({(c.p_test, c.p_min, c.p_min_holm) for c in comparisons}, key=lambda f: (f[1], f[0]))
    parts = [f"{_p_floor(raw)} raw, {_p_floor(adj)} after Holm ({test})" for test, raw, adj in floors]
    reach = "attainable" if all(adj < 0.001 for _, _, adj in floors) else "not attainable for every test"
    parts = [part.replace("0 raw, 0 after Holm", "none (a t-test, no resampling floor)") for part in parts]
    why = (f"chosen from the family size ({m} variant(s) vs the control per task) so that the smallest "
           f"Holm-adjusted resampling p, {m} x 2/({b}+1), is below 0.001" if b == families.resamples_for_family(max(1, m))
           else "set by the caller")
    return f"Resamples: {b} per test, {why}. Smallest attainable p: " + "; ".join(parts) + f". *** is {reach}."


def _precision_text(recipe_dir: Path) -> str:
    """Which precision and device trained and evaluated each arm: `bf16: auto` resolves on the
    machine that ran the stage (a GPU node's job, not the login node that submitted it)."""
    import json

    from harness.machine import describe_machine

    arms: dict[str, set[str]] = {}
    machines: set[str] = set()  # the hardware that made the numbers (scores move with it)
    for path in sorted(recipe_dir.glob("*/seed-*/run.json")):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        precision = run.get("precision") or {}
        machine = run.get("machine") or {}
        machines.update(describe_machine(m) for m in [machine.get("data_teacher"), machine.get("train"),
                                                      *(machine.get("eval") or {}).values()] if m)
        if not precision.get("train"):
            continue
        device = (run.get("device") or {}).get("train")
        arms.setdefault(path.parent.parent.name, set()).add(
            f"train {precision['train']}{f' on {device}' if device else ''}, "
            f"eval {', '.join(precision.get('eval') or ['?'])}")
    if not arms:
        return "Precision: not recorded (runs from before precision was recorded)."
    parts = [f"{arm}: {'; '.join(sorted(ran))}" for arm, ran in sorted(arms.items())]
    made_on = f" Made on: {'; '.join(sorted(machines))}." if machines else ""
    return (f"Precision and device per arm (`bf16: auto` resolves on the machine that ran each stage): "
            f"{'. '.join(parts)}.{made_on}")


def build_report(recipe_dir: Path, analysis: tuple[list[TaskComparison], dict[str, Any]] | None = None,
                 data: RecipeData | None = None) -> str:
    """report.md's text; ``analysis`` is ``compare_recipe``'s result and ``data`` the recipe already read,
    when the caller has them (units are read once per report)."""
    data = data or load_recipe(recipe_dir)
    scores, skipped = data.scores, data.skipped
    warnings = duplicate_variants(data.configs)
    for item in skipped:
        print(f"report: skipped {item}", file=sys.stderr)
    for warning in warnings:
        print(f"report: warning: {warning}", file=sys.stderr)
    if scores.empty:
        listed = "".join(f"\n  {item}" for item in skipped)
        raise HarnessError(f"{recipe_dir}: no readable scores found (expected <variant>/seed-N/scores.json){listed}")
    name = recipe_dir.name
    variants = sorted(scores["variant"].unique())
    order = control_first(variants)
    seeds = scores.groupby("variant")["seed"].nunique()
    comparisons, summary = analysis or compare_recipe(data)

    lines = [f"# Report: {name}", "",
             f"Generated by `python -m harness report {recipe_dir}` from the files in this folder; regenerate "
             "with the same command. Control: `base`. Scores are main scores x100; Δ = variant − control.", "",
             f"Variants: {len(variants)}; training seeds per variant: "
             + ", ".join(f"{v} {int(seeds[v])}" for v in order) + ".", "",
             _precision_text(recipe_dir), "",
             "## Scores", "", comparison_markdown(scores), ""]

    task_types = scores.drop_duplicates("task").set_index("task")["type"].to_dict()
    means = variant_task_means(scores).drop(columns="Mean(Task)")
    agg = mean_task_type_and_borda(means, task_types)
    lines += ["## Aggregates (as the MTEB leaderboard)", "", f"Missing tasks: {MISSING_RULE}.", "",
              markdown_table([[v, *(_fmt(agg.at[v, c]) if c not in ("Borda count", "Rank (Borda)") else f"{agg.at[v, c]:g}"
                         for c in agg.columns)] for v in agg.index], ["variant", *agg.columns]), ""]

    if comparisons:
        lines += ["## Per-task tests: each variant vs the control", "",
                  "Units are paired by id (query, sentence, pair). `p (Holm)` corrects across the variants of this "
                  "recipe, separately for each task (the family: every variant-vs-control comparison on that task). "
                  "Marks: * p<0.05, ** p<0.01, *** p<0.001 after correction. MDE: the smallest difference a "
                  "two-sided paired test at α=0.05 detects with 80% power on these units (unit noise only; the "
                  "Power section below adds seed variance).", "", _floors_text(comparisons, summary), "",
                  markdown_table([[c.variant, c.task, c.unit_metric, c.n_units, f"{c.n_seeds[0]}/{c.n_seeds[1]}",
                        _fmt(100 * c.control), _fmt(100 * c.value), _fmt(100 * c.delta, signed=True),
                        f"[{_fmt(100 * c.ci_low, signed=True)}, {_fmt(100 * c.ci_high, signed=True)}]",
                        _p(c.p_value), _p(c.p_holm), families.significance_mark(c.p_holm), _fmt(100 * c.mde),
                        "–" if math.isnan(c.seed_spread[0]) else
                        f"{100 * c.seed_spread[0]:.2f}/{100 * c.seed_spread[1]:.2f}"]
                       for c in comparisons],
                      ["variant", "task", "unit metric", "units", "seeds c/v", "control", "variant", "Δ",
                       "95% CI", "p", "p (Holm)", "sig", "MDE", "seed sd c/v"]), "",
                  "Tests used: " + "; ".join(sorted({c.test for c in comparisons})) + ".", ""]
    if any(c.n_seeds == (1, 1) for c in comparisons):
        lines += ["With one training seed per arm only query (unit) noise is counted: differences between "
                  "training seeds are not estimated, so a significant Δ may not survive a re-run with another seed.",
                  ""]
    lines += _untested_lines(summary)

    across = summary["across"]
    if across:
        lines += ["## Across tasks", "",
                  "Mean of per-task Δ (main score) with a bootstrap CI over tasks; Wilcoxon signed-rank over "
                  "tasks; Holm across the variants of this recipe.", "",
                  markdown_table([[v, s.n_tasks, _fmt(100 * s.mean_delta, signed=True),
                        f"[{_fmt(100 * s.ci_low, signed=True)}, {_fmt(100 * s.ci_high, signed=True)}]",
                        _p(s.p_value), _p(summary["holm"].get(v, float("nan"))),
                        _p_floor(families.holm_p_min(s.p_min, len(summary["holm"]) or 1)), f"{s.wins}/{s.ties}/{s.losses}",
                        "; ".join(s.notes)] for v, s in across.items()],
                      ["variant", "tasks", "mean Δ", "95% CI", "p (Wilcoxon)", "p (Holm)", "smallest p (Holm)",
                       "W/T/L", "notes"]), "",
                  "Tests used: " + "; ".join(sorted({s.p_test for s in across.values()})) + ".", ""]

    lines += factorial_lines(data)

    plans = power.plan_recipe(recipe_dir, power.REPORT_DELTA_POINTS / 100, required=False, data=data)
    if plans:
        lines += ["## Power", "",
                  f"Regenerate or change the target with `python -m harness power {recipe_dir} --delta D`.", "",
                  power.power_markdown(plans, power.REPORT_DELTA_POINTS / 100).rstrip(), ""]

    lines += _per_language(recipe_dir, order)
    lines += _plots(data, order)
    lines += cockpit_sections(recipe_dir)  # overrides, lengths, estimates, training curves (harness/report/cockpit.py)
    if warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in warnings), ""]
    lines += skipped_markdown(skipped, recipe_dir)
    return "\n".join(lines).rstrip() + "\n"


def _untested_lines(summary: dict[str, Any]) -> list[str]:
    """Tasks without a per-task test, each with its reason (never silently left out)."""
    untested = summary.get("untested") or []
    lines = []
    if untested:
        lines += ["### Tasks without a per-task test", "",
                  markdown_table([[u.task, u.task_type, u.reason] for u in untested], ["task", "type", "reason"]), ""]
    if summary.get("without_units"):
        lines += [f"Arms without units.parquet (not in the per-task tests): {', '.join(summary['without_units'])}.",
                  ""]
    return lines


def _plots(data: RecipeData, order: list[str]) -> list[str]:
    recipe_dir, scores = data.recipe_dir, data.scores
    lines = ["## Plots", ""]
    table = variant_task_means(scores).drop(columns="Mean(Task)")
    if CONTROL_NAME in table.index and len(table.index) > 1:
        deltas = (table - table.loc[CONTROL_NAME]).drop(index=CONTROL_NAME)
        deltas = deltas.reindex([v for v in order if v in deltas.index])
        delta_heatmap(deltas, recipe_dir / "plots" / "delta_heatmap.png")
        lines += ["Δ vs base, variant x task:", "", "![Δ heatmap](plots/delta_heatmap.png)", ""]
    overrides = data.configs
    unit_means = _unit_means(data)
    base_config = overrides.get(CONTROL_NAME, {}).get("config", {})
    axes = sorted({k for v in overrides.values() for k in v["overrides"]})
    for axis in axes:
        arms = [(CONTROL_NAME, config_value(base_config, axis))]
        arms += [(v, o["overrides"][axis]) for v, o in sorted(overrides.items())
                 if list(o["overrides"]) == [axis]]
        if len(arms) < 2 or unit_means.empty:
            continue
        points = unit_means[unit_means.variant.isin([a for a, _ in arms])].copy()
        labels = {a: ("none" if value is None else str(value)) for a, value in arms}
        points["value"] = points["variant"].map(labels)
        points = points.sort_values("value", key=lambda s: s.map(_sort_key))
        file = recipe_dir / "plots" / f"axis_{axis.replace('/', '_')}.png"
        axis_plot(axis, points, file)
        lines += [f"Per-unit metric vs `{axis}` (mean over units, 95% bootstrap CI; other axes at base):", "",
                  f"![{axis}](plots/{file.name})", ""]
    return lines


def _sort_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


#: significance.json's key for how the tests were run; never a variant name (those come from overrides).
SETTINGS_KEY = "_settings"
#: significance.json's key for the tasks without a per-task test: task -> {type, reason}.
UNTESTED_KEY = "_untested"


def significance_summary(recipe_dir: Path,
                         analysis: tuple[list[TaskComparison], dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the leaderboard marks: per-task and across-task Holm-corrected p per variant, with the
    smallest p each test could reach (``p_min``, ``p_min_holm``), the unit metric each task was tested
    on, under SETTINGS_KEY the resamples, and under UNTESTED_KEY every task without a test and why."""
    comparisons, summary = analysis or compare_recipe(load_recipe(recipe_dir))
    family = len(summary["holm"]) or 1
    b = summary["n_resamples"]
    out: dict[str, Any] = {SETTINGS_KEY: {
        "n_resamples": b, "family_size": summary["family_size"], "holm_family": "variants vs the control, per task "
        "(per-task tests) and across tasks (Wilcoxon)", "p_min_resampling": round(2 / (b + 1), 8),
        "p_min_resampling_holm": round(families.holm_p_min(2 / (b + 1), summary["family_size"] or 1), 8)},
        UNTESTED_KEY: {u.task: {"type": u.task_type, "reason": u.reason} for u in summary.get("untested", [])}}
    for c in comparisons:
        out.setdefault(c.variant, {"tasks": {}})["tasks"][c.task] = {
            "delta": round(c.delta, 6), "p": round(c.p_value, 6), "p_holm": round(c.p_holm, 6), "test": c.test,
            "unit_metric": c.unit_metric, "p_min": round(c.p_min, 8), "p_min_holm": round(c.p_min_holm, 8)}
    for variant, s in summary["across"].items():
        out.setdefault(variant, {"tasks": {}})["across"] = {
            "mean_delta": round(s.mean_delta, 6), "p": None if math.isnan(s.p_value) else round(s.p_value, 6),
            "p_holm": summary["holm"].get(variant), "test": s.p_test, "n_tasks": s.n_tasks, "n_used": s.n_used,
            "exact": s.exact, "p_min": round(s.p_min, 8), "p_min_holm": round(families.holm_p_min(s.p_min, family), 8)}
    return out


def write_report(recipe_dir: Path) -> Path:
    """Write report.md (and significance.json, which the leaderboard reads for its marks)."""
    data = load_recipe(recipe_dir)
    if data.scores.empty:  # build_report names what it skipped
        return atomic.write_text(recipe_dir / "report.md", build_report(recipe_dir, data=data))
    analysis = compare_recipe(data)
    atomic.write_json(recipe_dir / "significance.json", significance_summary(recipe_dir, analysis))
    return atomic.write_text(recipe_dir / "report.md", build_report(recipe_dir, analysis, data))
