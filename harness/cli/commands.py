"""One function per command: validate the arguments, call the library, print the outcome."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli.render import dry_run_text, machine_text, tasks_text
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.config import VariantConfig


def bf16_arg(value: str) -> bool | str:
    """`--bf16 auto|true|false` as the config's `bf16` value."""
    return {"auto": "auto", "true": True, "false": False}[value]


def command_env() -> dict[str, str]:
    """Variables a command runs under (cli.main scopes them to the command; the user's own win).
    mteb creates its cache folder at import time: point it into ours before anything imports it."""
    from harness.paths import cache_root

    defaults = {"MTEB_CACHE": str(cache_root() / "mteb"), "TOKENIZERS_PARALLELISM": "false"}
    return {name: value for name, value in defaults.items() if name not in os.environ}


def cmd_ablate(args: argparse.Namespace) -> int:
    from harness.hub import missing_revisions

    with missing_revisions("warn" if args.dry_run else "error"):  # an unresolvable Hub revision: warn in a dry run only
        return _ablate(args)


def _ablate(args: argparse.Namespace) -> int:
    from harness.recipe import load_recipe

    started = time.perf_counter()
    recipe = load_recipe(args.recipe, _overrides(args))  # validated before anything is built or written
    from harness import preflight
    from harness.paths import cache_root

    if args.eval_shards < 1 or (args.eval_shards > 1 and args.executor == "local"):
        raise HarnessError(f"--eval-shards {args.eval_shards}: allowed is a count >= 1, and shards > 1 need "
                           f"--executor slurm or submitit-local (local evaluates every task in this process)")
    results_root = Path(args.results)
    checked = preflight.check_recipe(recipe)  # every file and folder it names exists
    preflight.check_writable(results_root, "results root")
    preflight.check_writable(cache_root(), "cache ($HARNESS_CACHE)")
    if not args.no_leaderboard:
        preflight.check_writable(Path(args.leaderboard).parent, "leaderboard folder")
    from harness.pipeline import plan, run_plans, task_revisions

    tasks = task_revisions(recipe)
    plans = plan(recipe, results_root, tasks)
    estimates = None
    if not args.no_lengths:
        try:
            estimates = _estimates(recipe, plans, tasks, args)
        except (OSError, HarnessError) as exc:  # a Hub tokenizer or task offline: the rest still runs
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"warning: token lengths and compute estimates skipped (a tokenizer or task could not be "
                  f"loaded here: {why})", file=sys.stderr)
    if args.dry_run:
        print(dry_run_text(recipe, plans))
        if args.eval_shards > 1:
            from harness.evaluate.shards import shards_text

            print(shards_text(plans, tasks, args.eval_shards))
        print(tasks_text(tasks))
        if estimates is not None:
            print(estimates[1])
            print(estimates[2])
        print(f"\nchecked: {checked} model / path / task value(s) exist or are valid Hub ids; "
              f"results root, cache{'' if args.no_leaderboard else ' and leaderboard'} writable")
        return 0
    print(f"recipe {recipe.name}: {len(recipe.variants)} variants x {len(recipe.seeds)} seed(s) = {len(plans)} runs")
    print(machine_text(recipe.base))
    if estimates is not None:
        print(estimates[2].rsplit("\n", 1)[-1].strip())  # the sweep's total
        for line in estimates[1].splitlines():  # the length warnings; the table is in the dry-run
            if line.strip().startswith("warning:"):
                print(line.strip())
    if args.executor == "local":
        from harness.cli.progress import SweepProgress

        progress = SweepProgress(plans, estimates[0] if estimates else None)
        try:
            run_plans(plans, tasks, log=progress.log, show_progress=not args.no_progress)
        finally:
            progress.close()
    else:
        from harness.executors import SlurmOptions, submit_runs

        submit_runs(plans, tasks, executor=args.executor, folder=cache_root() / "submitit" / recipe.name,
                    slurm=SlurmOptions(partition=args.slurm_partition, time_minutes=args.slurm_time),
                    eval_shards=args.eval_shards)
    from harness.report.leaderboard import write_leaderboard
    from harness.report.report import write_report
    from harness.report.results import load_scores
    from harness.report.tables import comparison_markdown

    if estimates is not None:
        from harness.estimates import write_estimates

        write_estimates(plans, estimates[0])
    recipe_dir = results_root / recipe.name
    print(f"\n{comparison_markdown(load_scores(recipe_dir))}\n")
    print(f"report written to {write_report(recipe_dir)}")
    if not args.no_leaderboard:
        print(f"leaderboard regenerated: {write_leaderboard(results_root, Path(args.leaderboard))}")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 0


def _estimates(recipe: Any, plans: list, tasks: dict, args: argparse.Namespace) -> tuple[dict, str, str]:
    """Token lengths and the compute estimate of every run: (estimates by variant, length table,
    estimate text)."""
    from harness.estimates import sweep_estimates, sweep_text
    from harness.lengths import plan_lengths, plan_lengths_text

    # a trained-variant teacher or backbone measures with its own tokenizer: this recipe's references
    with plans[0].references.active() if plans else contextlib.nullcontext():
        groups = plan_lengths({p.variant.name: (p.variant.config, list(p.evals)) for p in plans},
                              {n: t for n, (t, _) in tasks.items()})
        estimates = sweep_estimates(groups, len(recipe.seeds), args.throughput)
    return estimates, plan_lengths_text(groups), sweep_text(estimates, len(recipe.seeds))


def _overrides(args: argparse.Namespace) -> dict:
    from harness.overrides import parse_overrides

    return parse_overrides(list(getattr(args, "overrides", None) or []))


def load_variant_config(path: Path, overrides: dict | None = None) -> VariantConfig:
    """A variant config YAML: a bare config, or a results/<recipe>/<variant>/config.yaml; `overrides`
    (dotted key -> value) edit it before validation."""
    from pydantic import ValidationError

    from harness.config import VariantConfig
    from harness.yamlio import pydantic_message, read_yaml

    raw = read_yaml(path)
    if "config" in raw and "variant_hash" in raw:
        raw = raw["config"]
    if overrides:
        from harness.overrides import apply_overrides, check_values

        edited = apply_overrides(raw, overrides, VariantConfig)
        check_values(raw, edited, overrides, VariantConfig, str(path))
        raw = edited
    try:
        return VariantConfig.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(pydantic_message(path, exc, "", VariantConfig)) from None


def cmd_train(args: argparse.Namespace) -> int:
    from harness.preflight import check_config
    from harness.stages import train_stage
    from harness.train.stage import launch_torchrun, run_train_stage

    config = load_variant_config(Path(args.config), _overrides(args))
    check_config(config, Path(args.config))
    under_torchrun = "WORLD_SIZE" in os.environ
    if config.train.nproc > 1 and not under_torchrun:
        summary = launch_torchrun(config, show_progress=not args.no_progress)
    else:
        summary = run_train_stage(config, show_progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {train_stage(config).dir / 'model'}")
        print(f"summary: {summary}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from harness.config import EvalConfig, ModelConfig
    from harness.evaluate.resolve import check_names, resolve_tasks

    if not args.tasks and not args.benchmark:
        raise HarnessError("eval: name --tasks and/or --benchmark (e.g. --benchmark \"MTEB(Africa, v1, lite)\")")
    from harness.evaluate.baseline import RANDOM_ALIASES
    from harness.paths import cache_root
    from harness.preflight import check_writable, model_problem, task_folder_problem

    problem = None if args.model in RANDOM_ALIASES else model_problem(args.model, "model")
    problem = problem or next((p for p in map(task_folder_problem, args.tasks or []) if p), None)
    if problem:
        raise HarnessError(f"eval: {problem}")
    check_writable(Path(args.results), "results root")
    check_writable(cache_root(), "cache ($HARNESS_CACHE)")
    eval_config = EvalConfig(tasks=args.tasks or [], benchmarks=args.benchmark or [], languages=args.languages,
                             batch_size=args.batch_size, bf16=bf16_arg(args.bf16), device=args.device)
    check_names(eval_config)
    model = ModelConfig(backbone=args.model, pooling=args.pooling, instructions=not args.no_instructions,
                        query_max_length=args.max_length, passage_max_length=args.max_length)
    if args.dry_run:
        tasks = resolve_tasks(eval_config)
        print(f"model {args.model}: {len(tasks)} task(s)")
        print(tasks_text({n: (t, str(t.metadata.dataset.get("revision"))) for n, t in tasks.items()}))
        return 0
    from harness.evaluate.baseline import evaluate_baseline
    from harness.report.leaderboard import write_leaderboard

    out = evaluate_baseline(args.model, model, eval_config, Path(args.results), show_progress=not args.no_progress)
    print(f"baseline written to {out}")
    if not args.no_leaderboard:
        print(f"leaderboard regenerated: {write_leaderboard(Path(args.results), Path(args.leaderboard))}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from harness.data_build import data_build, parse_shard

    shard = parse_shard(args.shard) if args.shard else None
    data_build(args.recipe, variant=args.variant, shard=shard, show_progress=not args.no_progress)
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from harness.config import SynthConfig
    from harness.data.synth_stage import synthesize_to

    try:
        config = SynthConfig(backend="openai" if args.base_url else "transformers", model=args.model,
                             base_url=args.base_url, personas=args.personas, personas_limit=args.personas_limit,
                             n_examples=args.n, kinds=args.kinds or SynthConfig().kinds, seed=args.seed,
                             max_tokens=args.max_tokens, temperature=args.temperature)
    except ValueError as exc:
        raise HarnessError(f"data synth: {exc}") from None
    card = synthesize_to(config, Path(args.out), show_progress=not args.no_progress)
    print(f"rows: {args.out}\ncard: {args.out}.card.json")
    counts = card.get("counts", {})
    print(", ".join(f"{k} {counts[k]}" for k in ("requested", "generated", "invalid", "duplicates", "failed")
                    if k in counts))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.report import write_report

    folder = Path(args.results_dir)
    if not folder.is_dir():
        raise HarnessError(f"{folder}: no such results folder (expected results/<recipe>)")
    print(f"written {write_report(folder)}")
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from harness.report.power import check_targets, plan_recipe, power_markdown

    folder = Path(args.results_dir)
    if not folder.is_dir():
        raise HarnessError(f"{folder}: no such results folder (expected results/<recipe>)")
    check_targets(args.delta, args.alpha, args.power)
    delta = args.delta / 100  # points (x100, as the report prints scores) -> score units
    plans = plan_recipe(folder, delta, alpha=args.alpha, power=args.power)
    print(power_markdown(plans, delta, alpha=args.alpha, power=args.power), end="")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.report.leaderboard import write_leaderboard

    print(f"written {write_leaderboard(Path(args.results), Path(args.out))}")
    return 0


def cmd_export_mteb(args: argparse.Namespace) -> int:
    from harness.export.mteb import export_results

    out = Path(args.out)
    print(f"exporting {args.results_dir} in mteb's results layout to {out / 'results'}")
    done = export_results(Path(args.results_dir), out)
    print(f"{len(done)} run(s) exported; load them with mteb.ResultCache({str(out)!r}).load_results()")
    return 0


def cmd_export_model(args: argparse.Namespace) -> int:
    from harness.export.card import export_model

    card = export_model(Path(args.seed_dir), Path(args.out))
    print(f"model folder with its card: {card.parent}\ncard: {card}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from harness.evaluate.tasks import REGISTRY

    name_width = max(map(len, REGISTRY))
    type_width = max(len(entry.task_type) for entry in REGISTRY.values())
    for name, entry in sorted(REGISTRY.items()):
        print(f"{name:{name_width}s} {entry.task_type:{type_width}s} {entry.description}")
    return 0
