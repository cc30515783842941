"""Text the commands print: dry-run plans, machine and task listings (pure functions of plans)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the CLI imports heavy modules lazily
    from harness.config import VariantConfig
    from harness.pipeline import RunPlan
    from harness.recipe import Recipe


def dry_run_text(recipe: Recipe, plans: list[RunPlan]) -> str:
    lines = [f"recipe {recipe.name} ({recipe.path}), mode {recipe.mode}, seeds {recipe.seeds} "
             f"(seed scope {recipe.seed_scope})",
             f"{len(recipe.variants)} variants, {len(plans)} runs"]
    if recipe.overrides:
        from harness.overrides import overrides_text

        lines.append(f"command-line overrides of the base: {overrides_text(recipe.overrides)}")
    lines.append("")
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

    lines = []
    for spec in trained_dependencies(p.config):
        target = p.references.resolve(spec)
        same = target.recipe.path.resolve() == p.recipe.path.resolve()
        state = "trained" if target.train.done() else (
            "trained first by this ablate" if same else f"not trained: run {target.command()}")
        lines.append(f"    depends on {target.ref} (train stage {target.train.hash}): {state}")
    return lines


def machine_text(config: VariantConfig) -> str:
    """Where this run computes and in which precision (train and eval), with the CPU's vector ISA."""
    from harness.devices import resolve_compute

    lines = []
    for phase, section in (("train", config.train), ("eval", config.eval)):
        lines.append(f"{phase}: {resolve_compute(section.device, section.bf16).describe()}")
    return "\n".join(lines)


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
