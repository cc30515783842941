"""What runs inside an executor job (SLURM through submitit, or submitit's local executor).

A job reloads the recipe by path and plans on its own node, so `device: auto` and `bf16: auto`
resolve on the machine that computes, not on the login node that submitted it. The parent sends
the run's config (`bf16: auto` unresolved) to check that the recipe has not changed since
submission; precision-resolved stage hashes are never compared across machines. A job returns
the stages it actually produced (kind, key, hash), and the parent publishes exactly those.

Jobs are submitit-checkpointable: on preemption or timeout submitit calls `checkpoint()`, which
resubmits the same call; the requeued job skips finished stages and the train stage resumes from
its last checkpoint (`train.checkpoint_every`), an evaluation from its last finished task.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, HarnessRuntimeError

if TYPE_CHECKING:
    from harness.pipeline import RunPlan
    from harness.stages import Stage

StageRecord = dict[str, Any]  # {"kind", "key", "hash"}: a stage as a job computed it


def config_changes(submitted: Any, now: Any, path: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, as `key: old -> new`."""
    if isinstance(submitted, dict) and isinstance(now, dict):
        out: list[str] = []
        for key in sorted(set(submitted) | set(now), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in now:
                out.append(f"{where}: {submitted[key]!r} -> (removed)")
            elif key not in submitted:
                out.append(f"{where}: (absent) -> {now[key]!r}")
            else:
                out.extend(config_changes(submitted[key], now[key], where))
        return out
    return [] if submitted == now else [f"{path}: {submitted!r} -> {now!r}"]


def load_run(recipe_path: str, variant_name: str, seed: int, results_root: str,
             submitted_config: dict[str, Any]) -> tuple[RunPlan, dict[str, tuple[Any, str]]]:
    """Plan one (variant, seed) on this node; stop with one line if its config changed since submission.
    The config is checked before the tasks are resolved (mteb and the task data): a stale job fails
    in a second, not after loading what it will not use."""
    from harness.pipeline import plan, task_revisions
    from harness.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    variant = next((v for v in recipe.variants if v.name == variant_name), None)
    if variant is None or seed not in recipe.seeds:
        raise HarnessError(f"{recipe_path}: no variant {variant_name!r} with seed {seed} (the recipe changed since "
                           f"the job was submitted); run ablate again")
    changes = config_changes(submitted_config, variant.run_config(seed).to_dict())
    if changes:
        shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise HarnessError(f"{recipe_path}: variant {variant_name!r} (seed {seed}) changed since the job was "
                           f"submitted ({shown}); run ablate again")
    tasks = task_revisions(recipe)
    (run,) = [p for p in plan(recipe, Path(results_root), tasks) if p.variant.name == variant_name and p.seed == seed]
    return run, tasks


def record(stage: Stage) -> StageRecord:
    return {"kind": stage.kind, "key": stage.key, "hash": stage.hash}


def stage_from(rec: StageRecord) -> Stage:
    """The parent's Stage of what a job computed; the hash must match (same harness on both sides)."""
    from harness.stages import Stage

    stage = Stage(rec["kind"], rec["key"])
    if stage.hash != rec["hash"]:
        raise HarnessRuntimeError(f"a job computed {rec['kind']} stage {rec['hash']} but this process keys it as "
                                  f"{stage.hash}: the job ran another harness version (STAGE_VERSIONS differ)")
    return stage


class _Requeueable:
    """submitit requeues a preempted or timed-out job only when its callable has `checkpoint()`;
    resubmitting the same call is enough, because every stage is cached or resumable."""

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        print(f"{type(self).__name__}: preempted or timed out; requeued, resumes from its last checkpoint", flush=True)
        return DelayedSubmission(self, *args, **kwargs)


class TrainJob(_Requeueable):
    """One (variant, seed) through data (+ contamination) -> train; returns the stages it produced."""

    def __call__(self, recipe_path: str, variant_name: str, seed: int, results_root: str,
                 submitted_config: dict[str, Any]) -> dict[str, StageRecord]:
        from harness.pipeline import run_data, run_train

        p, tasks = load_run(recipe_path, variant_name, seed, results_root, submitted_config)
        run_data(p, tasks, print)
        run_train(p, print, show_progress=False)
        return {"data": record(p.data), "contamination": record(p.contamination), "train": record(p.train)}


class EvalJob(_Requeueable):
    """One task shard of a trained (variant, seed): evaluates the shard's tasks not cached yet;
    returns the eval stages (one per task) it produced or found."""

    def __call__(self, recipe_path: str, variant_name: str, seed: int, results_root: str,
                 submitted_config: dict[str, Any], task_names: list[str]) -> dict[str, StageRecord]:
        from harness.pipeline import run_eval

        p, tasks = load_run(recipe_path, variant_name, seed, results_root, submitted_config)
        run_eval(p, tasks, print, show_progress=False, only=task_names)
        return {t: record(p.evals[t]) for t in task_names}
