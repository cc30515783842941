"""The argparse tree: every command, its arguments and help text (no behaviour here)."""

from __future__ import annotations

import argparse

from harness.cli import commands
from harness.overrides import OVERRIDE_HELP
from harness.paths import results_root


def _device_arg(value: str) -> str:
    import re

    from harness.devices import DEVICE_PATTERN

    if not re.match(DEVICE_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r}: allowed values are auto, cpu, cuda, cuda:N, mps")
    return value


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
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDE_HELP)
    p.add_argument("--dry-run", action="store_true", help="list variants, hashes, overrides and cache state; run nothing")
    p.add_argument("--no-lengths", action="store_true",
                   help="dry-run: skip measuring token lengths and the compute estimate")
    p.add_argument("--throughput", type=float, metavar="TOKENS_PER_S",
                   help="training tokens/s of the target hardware for the time estimate (default: calibrate "
                        "a few training steps here)")
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
    p.set_defaults(func=commands.cmd_ablate)

    p = sub.add_parser("train", help="train one variant config (torchrun-aware)",
                       description="Train one variant config through the cached data and train stages. With "
                                   "train.nproc > 1 it launches torchrun itself; under torchrun every rank runs it.")
    p.add_argument("config", help="variant config YAML (a bare config or results/<recipe>/<variant>/config.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDE_HELP)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("eval", help="evaluate any model as a baseline row (embedded name, Hub id, folder, random)",
                       description="Evaluate MODEL (minilm, tiny-qwen2, a Hub id such as Qwen/Qwen2-0.5B, a local "
                                   "folder, or 'random' for mteb's baseline-random-encoder) on tasks or mteb "
                                   "benchmarks; write results/baselines/<model>/ and regenerate the leaderboard.")
    p.add_argument("model", help="model spec")
    p.add_argument("--benchmark", action="append", help='mteb benchmark name, repeatable: "MTEB(eng, v2)", AfriMTEB-Lite, "Harness(offline, v1, lite)", …')
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
    p.set_defaults(func=commands.cmd_eval)

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
    q.set_defaults(func=commands.cmd_data_build)
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
    q.set_defaults(func=commands.cmd_data_synth)

    p = sub.add_parser("report", help="write the significance report and plots of one recipe's results",
                       description="Read results/<recipe>/ and write report.md (tables, paired tests with CIs, "
                                   "Holm correction, per-language breakdown) and plots/*.png.")
    p.add_argument("results_dir", help="a recipe's results folder, e.g. results/quickstart")
    p.set_defaults(func=commands.cmd_report)

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
    p.set_defaults(func=commands.cmd_power)

    p = sub.add_parser("leaderboard", help="regenerate leaderboard.md from results/",
                       description="Regenerate the leaderboard from every scores.json under the results root.")
    p.add_argument("--results", default=str(results_root()), help="results root")
    p.add_argument("--out", default="leaderboard.md", help="output file (default: leaderboard.md)")
    p.set_defaults(func=commands.cmd_leaderboard)

    p = sub.add_parser("export", help="write results in other tools' formats (mteb), or a model with its card",
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
    q.set_defaults(func=commands.cmd_export_mteb)
    q = export_sub.add_parser("model", help="a run's model folder with a model card (README.md) carrying its data "
                                            "provenance and scores",
                              description="Copy the checkpoint of one run (RESULTS_DIR/<recipe>/<variant>/seed-N) "
                                          "to DIR and write its README.md: Hub metadata (library_name, base_model, "
                                          "language, tags, datasets, model-index as mteb's create-meta writes it), "
                                          "the recipe and overrides, the data card, training settings, and scores "
                                          "with 95% CIs against the control. SentenceTransformer(DIR) loads it.")
    q.add_argument("seed_dir", metavar="SEED_DIR", help="a run's results folder, e.g. results/quickstart/base/seed-0")
    q.add_argument("--out", required=True, metavar="DIR", help="new (or empty) folder for the model")
    q.set_defaults(func=commands.cmd_export_model)

    p = sub.add_parser("tasks", help="list the harness's own evaluation tasks",
                       description="List the offline evaluation tasks the harness builds from packaged data.")
    p.set_defaults(func=commands.cmd_tasks)
    _debug_anywhere(parser)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting `key=value` overrides come after options too (`ablate R --dry-run train.lr=1`)."""
    from harness.overrides import is_override

    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all(is_override(e) for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _debug_anywhere(parser: argparse.ArgumentParser) -> None:
    """Accept `--debug` after any (sub)command too, not only before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if "--debug" not in child._option_string_actions:
                    child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                       help="print the traceback with every error")
                _debug_anywhere(child)
