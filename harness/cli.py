"""Command line: a thin argparse layer over plain functions (which tests call directly)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.paths import results_root

if TYPE_CHECKING:  # annotations only: the CLI imports heavy modules lazily
    from harness.config import VariantConfig
    from harness.pipeline import RunPlan
    from harness.recipe import Recipe


def _setup_env() -> None:
    # mteb creates its cache folder at import time: point it into ours before anything imports it.
    from harness.paths import cache_root

    os.environ.setdefault("MTEB_CACHE", str(cache_root() / "mteb"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cmd_ablate(args: argparse.Namespace) -> int:
    from harness.recipe import load_recipe

    started = time.perf_counter()
    recipe = load_recipe(args.recipe)  # validated before anything is built or written
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

    from harness.hub import set_missing_policy

    set_missing_policy("warn" if args.dry_run else "error")  # an unresolvable Hub revision: warn in a dry run only
    tasks = task_revisions(recipe)
    plans = plan(recipe, results_root, tasks)
    if args.dry_run:
        print(dry_run_text(recipe, plans))
        if args.eval_shards > 1:
            from harness.evaluate.shards import shards_text

            print(shards_text(plans, tasks, args.eval_shards))
        print(tasks_text(tasks))
        print(f"\nchecked: {checked} model / path / task value(s) exist or are valid Hub ids; "
              f"results root, cache{'' if args.no_leaderboard else ' and leaderboard'} writable")
        return 0
    print(f"recipe {recipe.name}: {len(recipe.variants)} variants x {len(recipe.seeds)} seed(s) = {len(plans)} runs")
    print(machine_text(recipe.base))
    if args.executor == "local":
        run_plans(plans, tasks, show_progress=not args.no_progress)
    else:
        from harness.executors import SlurmOptions, submit_runs

        submit_runs(plans, tasks, executor=args.executor, folder=cache_root() / "submitit" / recipe.name,
                    slurm=SlurmOptions(partition=args.slurm_partition, time_minutes=args.slurm_time),
                    eval_shards=args.eval_shards)
    from harness.report.leaderboard import write_leaderboard
    from harness.report.report import write_report
    from harness.report.results import load_scores
    from harness.report.tables import comparison_markdown

    recipe_dir = results_root / recipe.name
    print(f"\n{comparison_markdown(load_scores(recipe_dir))}\n")
    print(f"report written to {write_report(recipe_dir)}")
    if not args.no_leaderboard:
        print(f"leaderboard regenerated: {write_leaderboard(results_root, Path(args.leaderboard))}")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 0


def dry_run_text(recipe: Recipe, plans: list[RunPlan]) -> str:
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
        lines.extend(dependency_lines(p))
    return "\n".join(lines)


def dependency_lines(p: RunPlan) -> list[str]:
    """A run's trained-variant teachers/backbones: which train stage, trained or not, and by whom."""
    from harness.pipeline import trained_dependencies
    from harness.references import resolve

    lines = []
    for spec in trained_dependencies(p.config):
        target = resolve(spec)
        same = target.recipe.path.resolve() == p.recipe.path.resolve()
        state = "trained" if target.train.done() else (
            "trained first by this ablate" if same else f"not trained: run {target.command()}")
        lines.append(f"    depends on {target.ref} (train stage {target.train.hash}): {state}")
    return lines


def machine_text(config: VariantConfig) -> str:
    """Where this run computes and in which precision (train and eval), with the CPU's vector ISA."""
    from harness.devices import describe, resolve_device, resolve_precision

    lines = []
    for phase, section in (("train", config.train), ("eval", config.eval)):
        device = resolve_device(section.device)
        lines.append(f"{phase}: {describe(device, resolve_precision(section.bf16, device))}")
    return "\n".join(lines)


def _device_arg(value: str) -> str:
    import re

    from harness.devices import DEVICE_PATTERN

    if not re.match(DEVICE_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r}: allowed values are auto, cpu, cuda, cuda:N, mps")
    return value


def _bf16_arg(value: str) -> bool | str:
    return {"auto": "auto", "true": True, "false": False}[value]


def load_variant_config(path: Path) -> VariantConfig:
    """A variant config YAML: a bare config, or a results/<recipe>/<variant>/config.yaml."""
    from pydantic import ValidationError

    from harness.config import VariantConfig
    from harness.recipe import _pydantic_message, _read_yaml

    raw = _read_yaml(path)
    if "config" in raw and "variant_hash" in raw:
        raw = raw["config"]
    try:
        return VariantConfig.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(_pydantic_message(path, exc, "", VariantConfig)) from None


def cmd_train(args: argparse.Namespace) -> int:
    from harness.preflight import check_config
    from harness.stages import train_stage
    from harness.train.stage import launch_torchrun, run_train_stage

    config = load_variant_config(Path(args.config))
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


def tasks_text(tasks: dict) -> str:
    """Every task a recipe evaluates on, from local metadata (works without the Hub)."""
    from harness.evaluate.benchmarks import describe_task
    from harness.evaluate.resolve import is_local

    lines = ["", f"{len(tasks)} evaluation task(s):"]
    for name, (task, revision) in tasks.items():
        _, task_type, langs = describe_task(task)
        where = "offline (harness)" if is_local(task) else "Hugging Face Hub"
        lines.append(f"  {name:40s} {task_type:22s} {where:18s} langs: {langs}")
    return "\n".join(lines)


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
                             batch_size=args.batch_size, bf16=_bf16_arg(args.bf16), device=args.device)
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
    from harness.data.build import data_build, parse_shard

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


def cmd_tasks(args: argparse.Namespace) -> int:
    from harness.evaluate.tasks import REGISTRY

    for name, entry in sorted(REGISTRY.items()):
        print(f"{name:28s} {entry.task_type:14s} {entry.description}")
    return 0


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default=str(results_root()),
                   help="results root (default: results, or $HARNESS_RESULTS)")
    p.add_argument("--leaderboard", default="leaderboard.md", help="leaderboard file to regenerate")
    p.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Declarative ablations of embedding training recipes: train, evaluate with mteb, report.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback with every error (also: HARNESS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ablate", help="train and evaluate every variant of a recipe, then report",
                       description="Expand RECIPE into variants, run each through the cached data -> train -> "
                                   "evaluate stages, write results/<recipe>/, print a comparison table and "
                                   "regenerate leaderboard.md.")
    p.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yaml")
    p.add_argument("--dry-run", action="store_true", help="list variants, hashes, overrides and cache state; run nothing")
    p.add_argument("--executor", default="local", choices=["local", "slurm", "submitit-local"],
                   help="local: runs one after another here (default); slurm: per run, a training job via "
                        "submitit (GPUs = train.nproc), then its evaluation job(s) (1 GPU each); submitit-local: "
                        "the same jobs as local processes")
    p.add_argument("--eval-shards", type=int, default=1, metavar="N",
                   help="with an executor: evaluate each run as N jobs (task shards balanced by task size), "
                        "each started once the run's training job is done (default 1)")
    p.add_argument("--slurm-partition", help="SLURM partition (with --executor slurm)")
    p.add_argument("--slurm-time", type=int, default=24 * 60, help="job time limit in minutes (default 1440)")
    _output_args(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("train", help="train one variant config (torchrun-aware)",
                       description="Train one variant config through the cached data and train stages. With "
                                   "train.nproc > 1 it launches torchrun itself; under torchrun every rank runs it.")
    p.add_argument("config", help="variant config YAML (a bare config or results/<recipe>/<variant>/config.yaml)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate any model as a baseline row (embedded name, Hub id, folder, random)",
                       description="Evaluate MODEL (minilm, tiny-qwen2, a Hub id such as Qwen/Qwen2-0.5B, a local "
                                   "folder, or 'random' for mteb's baseline-random-encoder) on tasks or mteb "
                                   "benchmarks; write results/baselines/<model>/ and regenerate the leaderboard.")
    p.add_argument("model", help="model spec")
    p.add_argument("--benchmark", action="append", help='mteb benchmark name, repeatable: "MTEB(eng, v2)", AfriMTEB-Lite, …')
    p.add_argument("--tasks", nargs="+", help="harness or mteb task names")
    p.add_argument("--languages", nargs="+", metavar="LANG",
                   help="keep only these languages' subsets of multilingual tasks (ISO 639-3, e.g. amh hau yor), "
                        "as a recipe's eval.languages")
    p.add_argument("--pooling", default="mean", choices=["mean", "last_token", "cls"], help="pooling (default mean)")
    p.add_argument("--no-instructions", action="store_true", help="do not prepend KaLM's query instructions")
    p.add_argument("--max-length", type=int, default=256, help="max tokens per text (default 256)")
    p.add_argument("--batch-size", type=int, default=64, help="encoding batch size")
    p.add_argument("--bf16", nargs="?", const="true", default="auto", choices=["auto", "true", "false"],
                   help="bf16 autocast while encoding: auto (default) = only where the device runs bf16 natively; "
                        "--bf16 alone forces it")
    p.add_argument("--device", default="auto", type=_device_arg, help="auto (default: cuda when available, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--dry-run", action="store_true", help="list the tasks (type, languages, where the data lives); run nothing")
    _output_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("data", help="data tools: build a recipe's data stages, persona-based synthesis",
                       description="Data tools. `data build` runs only the data stages of a recipe and prints "
                                   "each data card; `data synth` generates persona-based synthetic training rows.")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = data_sub.add_parser("build", help="run only the data stages (sources, mix, filter, negatives, card)",
                            description="Build the data stage of every variant of RECIPE (or --variant NAME): "
                                        "sources -> mix -> ranking-consistency filter -> mined negatives -> card, "
                                        "cached as `ablate` caches them, and print each card. The teacher pass "
                                        "shards over `torchrun --nproc_per_node N -m harness data build RECIPE`, "
                                        "or over N jobs running `--shard I/N` followed by one plain run that merges.")
    q.add_argument("recipe", help="recipe YAML, e.g. recipes/kalm-v1.yaml")
    q.add_argument("--variant", help="only this variant (default: every variant)")
    q.add_argument("--shard", help="I/N: only encode teacher shard I (0-based) of N, for executor jobs")
    q.add_argument("--no-progress", action="store_true", help="hide progress bars")
    q.set_defaults(func=cmd_data_build)
    q = data_sub.add_parser("synth", help="generate persona-based synthetic rows (FlagEmbedding JSON lines)",
                            description="KaLM's two-step generation: brainstorm a task with a persona as system "
                                        "prompt, then write a JSON example for it; validated, retried, de-duplicated, "
                                        "resumable (run the same command again after an interruption).")
    q.add_argument("--model", required=True, help="Hub id / folder / tiny-qwen2 (local), or the served model name")
    q.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000 (vLLM, llama.cpp)")
    q.add_argument("--personas", default="proj-persona/PersonaHub", help="persona file (txt/jsonl) or HF dataset id")
    q.add_argument("--personas-limit", type=int, help="use at most this many personas")
    q.add_argument("-n", type=int, default=100, help="examples to generate (default 100)")
    q.add_argument("--kinds", nargs="+", help="task kinds (default: all six)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--temperature", type=float, default=1.0)
    q.add_argument("--max-tokens", type=int, default=1024)
    q.add_argument("--out", required=True, help="output JSON lines file")
    q.add_argument("--no-progress", action="store_true", help="hide progress bars")
    q.set_defaults(func=cmd_data_synth)

    p = sub.add_parser("report", help="write the significance report and plots of one recipe's results",
                       description="Read results/<recipe>/ and write report.md (tables, paired tests with CIs, "
                                   "Holm correction, per-language breakdown) and plots/*.png.")
    p.add_argument("results_dir", help="a recipe's results folder, e.g. results/quickstart")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("power", help="plan seeds/units: per-task minimum detectable effect, what detecting D needs",
                       description="Read the per-unit scores of every arm and seed in results/<recipe>/, estimate per "
                                   "task the paired unit variance and the between-seed variance, and print the "
                                   "minimum detectable effect at today's seeds and units, the seeds per arm needed "
                                   "to detect DELTA at today's units, and the units needed at today's seeds.")
    p.add_argument("results_dir", help="a recipe's results folder, e.g. results/quickstart")
    p.add_argument("--delta", type=float, default=1.0,
                   help="the effect to detect, in score points x100 as in the report (default 1.0)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="two-sided level per comparison (default 0.05; for a Holm family of m use 0.05/m)")
    p.add_argument("--power", type=float, default=0.8, help="probability of detecting DELTA (default 0.8)")
    p.set_defaults(func=cmd_power)

    p = sub.add_parser("leaderboard", help="regenerate leaderboard.md from results/",
                       description="Regenerate the leaderboard from every scores.json under the results root.")
    p.add_argument("--results", default=str(results_root()), help="results root")
    p.add_argument("--out", default="leaderboard.md", help="output file (default: leaderboard.md)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("export", help="write results in other tools' formats (mteb)",
                       description="Export results. `export mteb` writes every (variant, seed) in mteb's results "
                                   "layout, which mteb.ResultCache loads.")
    export_sub = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    q = export_sub.add_parser("mteb", help="mteb's results layout: results/<model>/<revision>/<Task>.json",
                              description="Write each (variant, seed) under RESULTS_DIR as DIR/results/<model name>/"
                                          "<revision>/<Task>.json + model_meta.json, so mteb.ResultCache(DIR) loads "
                                          "it beside published models' results. Model name = harness-<recipe>/"
                                          "<variant>-seed<N>, revision = its train-stage hash.")
    q.add_argument("results_dir", metavar="RESULTS_DIR", help="results root, a recipe's folder or one variant's")
    q.add_argument("--out", required=True, metavar="DIR", help="an mteb ResultCache folder (created if missing)")
    q.set_defaults(func=cmd_export_mteb)

    p = sub.add_parser("tasks", help="list the harness's own evaluation tasks",
                       description="List the offline evaluation tasks the harness builds from packaged data.")
    p.set_defaults(func=cmd_tasks)
    _debug_anywhere(parser)
    return parser


def _debug_anywhere(parser: argparse.ArgumentParser) -> None:
    """Accept `--debug` after any (sub)command too, not only before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if "--debug" not in child._option_string_actions:
                    child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                       help="print the traceback with every error")
                _debug_anywhere(child)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every expected failure is one `error:` line (exit 2: bad input, 1: runtime
    failure, 130: interrupted), a bug is a summary line plus its traceback (harness/failures.py)."""
    from harness.failures import DEBUG_ENV, report

    args = build_parser().parse_args(argv)
    previous = os.environ.get(DEBUG_ENV)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # torchrun ranks and executor jobs report the same way
    try:
        _setup_env()
        return int(args.func(args))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one place failures become messages
        return report(exc, debug=args.debug)
    finally:
        if args.debug and previous is None:
            os.environ.pop(DEBUG_ENV, None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
