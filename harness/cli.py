"""Command line: a thin argparse layer over plain functions (which tests call directly)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from harness.errors import HarnessError


def _setup_env() -> None:
    # mteb creates its cache folder at import time: point it into ours before anything imports it.
    from harness.paths import cache_root

    os.environ.setdefault("MTEB_CACHE", str(cache_root() / "mteb"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cmd_ablate(args: argparse.Namespace) -> int:
    from harness.recipe import load_recipe

    started = time.perf_counter()
    recipe = load_recipe(args.recipe)  # validated before anything is built or written
    from harness.pipeline import plan, run_plans, task_revisions

    results_root = Path(args.results)
    tasks = task_revisions(recipe)
    plans = plan(recipe, results_root, tasks)
    if args.dry_run:
        print(dry_run_text(recipe, plans))
        return 0
    print(f"recipe {recipe.name}: {len(recipe.variants)} variants x {len(recipe.seeds)} seed(s) = {len(plans)} runs")
    run_plans(plans, tasks, show_progress=not args.no_progress)
    from harness.report.compare import write_comparison
    from harness.report.leaderboard import write_leaderboard

    table, path = write_comparison(results_root / recipe.name)
    print(f"\n{table}\n\ncomparison written to {path}")
    if not args.no_leaderboard:
        print(f"leaderboard regenerated: {write_leaderboard(results_root, Path(args.leaderboard))}")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 0


def dry_run_text(recipe: object, plans: list) -> str:
    from harness.recipe import Recipe

    assert isinstance(recipe, Recipe)
    lines = [f"recipe {recipe.name} ({recipe.path}), mode {recipe.mode}, seeds {recipe.seeds}",
             f"{len(recipe.variants)} variants, {len(plans)} runs", ""]
    for p in plans:
        cached = p.cached()
        evals = [k for k in cached if k.startswith("eval:")]
        eval_done = sum(cached[k] for k in evals)
        overrides = ", ".join(f"{k}={v!r}" for k, v in p.variant.overrides.items()) or "(control: no overrides)"
        lines.append(f"{p.variant.name}  [seed {p.seed}]  hash {p.variant.hash}")
        lines.append(f"    overrides: {overrides}")
        lines.append(f"    cached: data {'yes' if cached['data'] else 'no'} ({p.data.hash}), "
                     f"train {'yes' if cached['train'] else 'no'} ({p.train.hash}), "
                     f"eval {eval_done}/{len(evals)} tasks")
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.compare import write_comparison

    folder = Path(args.results_dir)
    if not folder.is_dir():
        raise HarnessError(f"{folder}: no such results folder (expected results/<recipe>)")
    table, path = write_comparison(folder)
    print(f"{table}\n\nwritten to {path}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.report.leaderboard import write_leaderboard

    print(f"written {write_leaderboard(Path(args.results), Path(args.out))}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from harness.evaluate.tasks import REGISTRY

    for name, entry in sorted(REGISTRY.items()):
        print(f"{name:28s} {entry.task_type:14s} {entry.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Declarative ablations of embedding training recipes: train, evaluate with mteb, report.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ablate", help="train and evaluate every variant of a recipe, then report",
                       description="Expand RECIPE into variants, run each through the cached data -> train -> "
                                   "evaluate stages, write results/<recipe>/, print a comparison table and "
                                   "regenerate leaderboard.md.")
    p.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yaml")
    p.add_argument("--dry-run", action="store_true", help="list variants, hashes, overrides and cache state; run nothing")
    p.add_argument("--results", default=os.environ.get("HARNESS_RESULTS", "results"), help="results root (default: results)")
    p.add_argument("--leaderboard", default="leaderboard.md", help="leaderboard file to regenerate")
    p.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("report", help="write the comparison report of one recipe's results",
                       description="Read results/<recipe>/ and write its comparison table (comparison.md).")
    p.add_argument("results_dir", help="a recipe's results folder, e.g. results/quickstart")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("leaderboard", help="regenerate leaderboard.md from results/",
                       description="Regenerate the leaderboard from every scores.json under the results root.")
    p.add_argument("--results", default=os.environ.get("HARNESS_RESULTS", "results"), help="results root")
    p.add_argument("--out", default="leaderboard.md", help="output file (default: leaderboard.md)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("tasks", help="list the harness's own evaluation tasks",
                       description="List the offline evaluation tasks the harness builds from packaged data.")
    p.set_defaults(func=cmd_tasks)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_env()
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are cached; run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
