"""`ablate`: expand a recipe, run every (variant, seed) through the cached stages, write results/.

Runs one after another here; the stage functions are plain and idempotent, so an executor
(torchrun, SLURM through submitit: harness/executors.py) runs the same `run_data`, `run_train` and
`run_eval` (one task shard at a time) in its jobs, and the parent calls `publish`.
"""

from __future__ import annotations

import functools
import json
import platform
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import atomic
from harness.config import VariantConfig
from harness.errors import HarnessError
from harness.recipe import Recipe, Variant
from harness.references import Resolver
from harness.stages import Stage, compute_once, data_stage, eval_stage, sweep_stale, train_stage


@dataclass
class RunPlan:
    """One (variant, seed) and the stages it needs."""

    recipe: Recipe
    variant: Variant
    seed: int
    config: VariantConfig
    data: Stage
    train: Stage
    evals: dict[str, Stage]  # task name -> stage
    contamination: Stage

    @property
    def results_dir(self) -> Path:
        return variant_dir(self.recipe, self.variant, self.results_root) / f"seed-{self.seed}"

    results_root: Path = Path("results")
    references: Resolver = field(default_factory=Resolver)  # the recipe's `variant:` references

    @property
    def model_name(self) -> str:
        return f"harness-{self.recipe.name}/{self.variant.name}-seed{self.seed}"

    def cached(self) -> dict[str, bool]:
        return {"data": self.data.done(), "train": self.train.done(),
                **{f"eval:{t}": s.done() for t, s in self.evals.items()}}


def variant_dir(recipe: Recipe, variant: Variant, results_root: Path) -> Path:
    return results_root / recipe.name / variant.name.replace("/", "_")


def task_revisions(recipe: Recipe) -> dict[str, tuple[Any, str]]:
    """Resolve each task named by any variant once: (task object, data revision). Variants with the
    same eval settings (the usual case) share one resolution: building a harness task builds its data."""
    from harness.errors import HarnessError
    from harness.evaluate.resolve import eval_revision, resolve_tasks

    tasks: dict[str, tuple[Any, str]] = {}
    by_eval: dict[str, dict[str, Any]] = {}
    for variant in recipe.variants:
        settings = json.dumps(variant.config.eval.model_dump(mode="json"), sort_keys=True)
        try:
            if settings not in by_eval:
                by_eval[settings] = resolve_tasks(variant.config.eval)
        except HarnessError as exc:  # name the recipe and variant, as load-time errors do
            raise HarnessError(f"{recipe.path}: variant {variant.name!r}: {exc}") from None
        for name, task in by_eval[settings].items():
            seen = tasks.setdefault(name, (task, eval_revision(task)))
            if seen[1] != eval_revision(task):
                raise HarnessError(f"{recipe.path}: variant {variant.name!r} evaluates other subsets of {name} "
                                   f"(eval.languages) than an earlier variant; arms are compared on the same "
                                   f"tasks, so eval.languages must be the same in every variant")
    return tasks


def variant_tasks(config: VariantConfig) -> list[str]:
    from harness.evaluate.resolve import task_names

    return task_names(config.eval)


def plan(recipe: Recipe, results_root: Path, tasks: dict[str, tuple[Any, str]]) -> list[RunPlan]:
    plans = []
    references = Resolver.for_recipe(recipe.path, overrides=recipe.overrides)
    with references.active():
        for variant in recipe.variants:
            for seed in recipe.seeds:
                config = variant.run_config(seed)
                data = data_stage(config)
                names = variant_tasks(config)
                plans.append(RunPlan(
                    recipe=recipe, variant=variant, seed=seed, config=config,
                    data=data, train=train_stage(config),
                    evals={t: eval_stage(config, t, tasks[t][1]) for t in names},
                    contamination=contamination_stage(data, {t: tasks[t][1] for t in names}),
                    results_root=results_root, references=references,
                ))
        return order_by_teachers(plans)


def _with_references(run: Callable[..., None]) -> Callable[..., None]:
    """Run a stage function of a plan with the plan's recipe's reference resolver in effect."""

    @functools.wraps(run)
    def wrapper(p: RunPlan, *args: Any, **kwargs: Any) -> None:
        with p.references.active():
            run(p, *args, **kwargs)

    return wrapper


def trained_dependencies(config: VariantConfig) -> list[str]:
    """The `variant:` references a config trains from or filters with (its teacher, its backbone)."""
    from harness.refsyntax import is_reference

    specs = [config.model.backbone, config.data.filter.teacher if config.data.filter else None]
    return [s for s in specs if s and is_reference(s)]


def check_external_teachers(plans: list[RunPlan]) -> None:
    """Stop before any work when a teacher from another recipe is not trained yet, naming the command."""
    from harness.errors import HarnessError

    for p in plans:
        for spec in trained_dependencies(p.config):
            target = p.references.resolve(spec)
            if target.recipe.path.resolve() != p.recipe.path.resolve() and not target.train.done():
                raise HarnessError(f"{p.recipe.path}: variant {p.variant.name!r} uses {spec}, which is not trained "
                                   f"yet; train it first with: {target.command()}")


def teacher_runs(p: RunPlan) -> list[tuple[str, int]]:
    """The (variant, seed) runs of p's own recipe whose trained model p uses (as teacher or backbone)."""
    deps = []
    for spec in trained_dependencies(p.config):
        target = p.references.resolve(spec)
        if target.recipe.path.resolve() == p.recipe.path.resolve():
            deps.append((target.variant.name, target.ref.seed))
    return deps


def order_by_teachers(plans: list[RunPlan]) -> list[RunPlan]:
    """Runs whose teacher (or backbone) is another run of the same recipe go after that run, so
    `ablate` trains the teacher first; otherwise the recipe's order is kept."""
    by_key = {(p.variant.name, p.seed): p for p in plans}
    needs = {(p.variant.name, p.seed): teacher_runs(p) for p in plans}
    ordered: list[RunPlan] = []
    placed: set[tuple[str, int]] = set()

    def place(key: tuple[str, int]) -> None:
        if key in placed:
            return
        placed.add(key)
        for dep in needs[key]:
            place(dep)
        ordered.append(by_key[key])

    for p in plans:
        place((p.variant.name, p.seed))
    return ordered


# ----------------------------------------------------------------------------- stages


@_with_references
def run_data(p: RunPlan, tasks: dict[str, tuple[Any, str]], log: Any, show_progress: bool = True) -> None:
    if p.data.done():
        log(f"  data   {p.data.hash}  cached")
        sweep_stale(p.data)
    else:
        from harness.train.stage import build_data

        card = build_data(p.config, show_progress=show_progress)
        if card["built"]:
            log(f"  data   {p.data.hash}  built: {card['rows']} rows from {len(card['sources'])} source(s)")
        else:  # another process built it while we waited for its lock
            log(f"  data   {p.data.hash}  cached")
    if not p.contamination.done():
        run_contamination(p, tasks, log)
    else:
        sweep_stale(p.contamination)


def contamination_stage(data: Stage, tasks: dict[str, str]) -> Stage:
    return Stage("contamination", {"data": data.hash, "tasks": tasks})


def run_contamination(p: RunPlan, tasks: dict[str, tuple[Any, str]], log: Any) -> None:
    """Which training texts also occur in each evaluation task (exact and near-duplicates)."""
    from harness.data.contamination import contamination_report
    from harness.data.table import open_table
    from harness.evaluate.benchmarks import hub_reachable
    from harness.evaluate.resolve import is_local

    def build(tmp: Path) -> None:
        table = open_table(p.data.dir)  # streamed batch by batch: the rows are never all in memory
        texts = (t for r in table for t in (r.query, *r.pos, *r.neg))
        hub = any(not is_local(tasks[t][0]) for t in p.evals) and hub_reachable()  # one probe, not one per task
        checked = {t: tasks[t][0] for t in p.evals if hub or is_local(tasks[t][0])}
        report = contamination_report(texts, checked)
        report["not_checked"] = {t: "evaluation data not available offline" for t in p.evals if t not in checked}
        atomic.write_json(tmp / "contamination.json", report)

    if not compute_once(p.contamination, build):
        log(f"  contamination  {p.contamination.hash}  cached")
        return
    report = json.loads((p.contamination.dir / "contamination.json").read_text(encoding="utf-8"))
    exact = sum(v["exact"]["distinct"] for v in report["tasks"].values() if isinstance(v.get("exact"), dict))
    log(f"  contamination  {p.contamination.hash}  {exact} exact overlap(s) with {len(report['tasks'])} task(s)")


@_with_references
def run_train(p: RunPlan, log: Any, show_progress: bool) -> None:
    if p.train.done():
        log(f"  train  {p.train.hash}  cached")
        sweep_stale(p.train)
        return
    from harness.envvars import scoped_env
    from harness.train.stage import launch_torchrun, run_train_stage
    from harness.train.trackers import tracking_env

    # the tracker run's name, for this training only (torchrun ranks inherit it)
    with scoped_env(tracking_env(p.recipe.name, p.variant.name, p.seed, p.data.hash, p.train.hash)):
        if p.config.train.nproc > 1:
            summary = launch_torchrun(p.config, show_progress=show_progress)
        else:
            summary = run_train_stage(p.config, show_progress=show_progress)
    if summary.get("cached"):  # another process trained it while we waited for its lock
        log(f"  train  {p.train.hash}  cached")
        return
    resumed = f", resumed from step {summary['resumed_from']}" if summary.get("resumed_from") else ""
    log(f"  train  {p.train.hash}  trained: {summary['steps']} steps, final loss {summary['final_loss']}, "
        f"{summary['train_seconds']} s{resumed}")


@_with_references
def run_eval(p: RunPlan, tasks: dict[str, tuple[Any, str]], log: Any, show_progress: bool,
             only: Collection[str] | None = None) -> None:
    """Evaluate the run's tasks that are not cached yet; `only` restricts it to some (one task shard)."""
    from harness.evaluate.cached import run_cached_eval

    names = list(p.evals) if only is None else [t for t in p.evals if t in set(only)]
    unknown = sorted(set(only or ()) - set(p.evals))
    if unknown:
        raise HarnessError(f"{p.recipe.path}: variant {p.variant.name!r} does not evaluate {', '.join(unknown)}")
    if not p.train.done() and any(not p.evals[t].done() for t in names):
        raise HarnessError(f"{p.variant.name} (seed {p.seed}): its train stage {p.train.hash} is not in "
                           f"{p.train.dir.parent}; train it first (run the same ablate command)")

    def make_encoder() -> Any:
        from harness.evaluate.encoder import build_encoder
        from harness.model import Embedder

        embedder = Embedder.from_config(p.config.model, checkpoint=p.train.dir / "model")
        return build_encoder(embedder, p.config.eval, name=p.model_name, revision=p.train.hash,
                             show_progress=show_progress, log=log)

    run_cached_eval(make_encoder, {t: tasks[t][0] for t in names}, {t: p.evals[t] for t in names}, log,
                    show_progress=show_progress)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("harness", "torch", "transformers", "mteb", "sentence-transformers"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing package is recorded, not fatal
            out[pkg] = "missing"
    return out


@_with_references
def publish(p: RunPlan, log: Any = print, tasks: dict[str, tuple[Any, str]] | None = None) -> None:
    """Copy the small, human-readable part of each stage into results/<recipe>/<variant>/seed-N/."""
    from collections import Counter

    import pandas as pd

    from harness.budget import instruction_budget
    from harness.data.table import open_table
    from harness.evaluate.cached import publish_mteb_results

    vdir = variant_dir(p.recipe, p.variant, p.results_root)
    atomic.write_text(vdir / "config.yaml", yaml.safe_dump({
        "recipe": p.recipe.name, "variant": p.variant.name, "variant_hash": p.variant.hash,
        "overrides": p.variant.overrides, "config": p.variant.config.to_dict(),
    }, sort_keys=True, allow_unicode=True))
    out = p.results_dir
    card = json.loads((p.data.dir / "card.json").read_text(encoding="utf-8"))
    card["contamination"] = json.loads((p.contamination.dir / "contamination.json").read_text(encoding="utf-8"))
    instructions = Counter(i for i in open_table(p.data.dir).column("instruction") if i)
    card["instruction_budget"] = instruction_budget(p.config.model, instructions)
    for warning in card["instruction_budget"]["warnings"]:
        log(f"  warning: {warning}")
    from harness.lengths import run_lengths

    tasks = tasks or task_revisions(p.recipe)  # executor jobs publish without the parent's task objects
    lengths = run_lengths(p.config, open_table(p.data.dir), {t: tasks[t][0] for t in p.evals})
    if lengths:
        card["lengths"] = lengths["training"]
        atomic.write_json(out / "lengths.json", lengths)
        for warning in lengths["warnings"]:
            log(f"  warning: {warning}")
    atomic.write_json(out / "data_card.json", card)
    atomic.write_bytes(out / "train_log.jsonl", (p.train.dir / "log.jsonl").read_bytes())
    atomic.write_bytes(out / "train_summary.json", (p.train.dir / "summary.json").read_bytes())
    scores = {t: json.loads((s.dir / "scores.json").read_text(encoding="utf-8")) for t, s in p.evals.items()}
    atomic.write_json(out / "scores.json", {"model_name": p.model_name, "seed": p.seed, "tasks": scores})
    units = pd.concat([pd.read_parquet(s.dir / "units.parquet") for s in p.evals.values()], ignore_index=True)
    atomic.write_parquet(out / "units.parquet", units)
    publish_mteb_results(p.evals, out / "mteb")
    summary = json.loads((p.train.dir / "summary.json").read_text(encoding="utf-8"))
    from harness.paths import cache_root
    from harness.run_record import inputs_record, machines_record

    atomic.write_json(out / "run.json", {
        "stages": {"data": p.data.hash, "train": p.train.hash, **{f"eval:{t}": s.hash for t, s in p.evals.items()}},
        # relative to the cache root ($HARNESS_CACHE): no path of the machine that ran it in results/
        "checkpoint": (p.train.dir / "model").relative_to(cache_root()).as_posix(),
        "overrides": p.recipe.overrides,  # command-line key=value edits of the recipe's base
        "precision": {"train": p.train.key["precision"],
                      "eval": sorted({s.key["precision"] for s in p.evals.values()})},
        "device": {"train": summary.get("device")},
        "machine": machines_record(card, summary, p.evals),
        "inputs": inputs_record(p.data, p.train),
        "versions": _versions(),
    })
    if p.config.train.report_to:  # the eval scores join the run's tracker runs
        from harness.train.trackers import log_scores

        log_scores(p.config, scores, int(summary.get("steps") or 0), json.loads(
            (out / "run.json").read_text(encoding="utf-8"))["stages"], p.recipe.name, p.variant.name)


def run_plans(plans: list[RunPlan], tasks: dict[str, tuple[Any, str]], *, log: Any = print,
              show_progress: bool = True) -> float:
    started = time.perf_counter()
    check_external_teachers(plans)
    for i, p in enumerate(plans, start=1):
        log(f"[{i}/{len(plans)}] {p.variant.name} (seed {p.seed}, variant {p.variant.hash})")
        run_data(p, tasks, log, show_progress)
        run_train(p, log, show_progress)
        run_eval(p, tasks, log, show_progress)
        publish(p, log, tasks)
    return time.perf_counter() - started
