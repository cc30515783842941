"""Where runs execute: here, one after another (default), or as jobs through submitit
(SLURM on a cluster; submitit's local executor for a laptop and for tests).

A job is one (variant, seed): it reloads the recipe by path and runs the same idempotent
stages as a local run, so a job that dies is simply resubmitted by running `ablate` again.
The report and leaderboard are written by the parent once every job has finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, HarnessRuntimeError


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_minutes: int = 24 * 60
    cpus_per_task: int = 8
    mem_gb: int = 64
    gpus_per_node: int | None = None  # default: the variant's train.nproc


def run_one(recipe_path: str, variant_name: str, seed: int, results_root: str, show_progress: bool = False) -> str:
    """One (variant, seed) through data -> train -> eval -> results/; returns its results folder."""
    from harness.pipeline import plan, run_plans, task_revisions
    from harness.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    tasks = task_revisions(recipe)
    plans = [p for p in plan(recipe, Path(results_root), tasks) if p.variant.name == variant_name and p.seed == seed]
    if not plans:
        raise HarnessError(f"{recipe_path}: no variant {variant_name!r} with seed {seed}")
    run_plans(plans, tasks, show_progress=show_progress)
    return str(plans[0].results_dir)


def submit_all(plans: list[Any], *, executor: str, folder: Path, slurm: SlurmOptions | None = None,
               log: Any = print) -> list[str]:
    """Submit every plan as a submitit job (`slurm` or `submitit-local`) and wait for all of them."""
    try:
        import submitit
    except ImportError:
        raise HarnessError("executor needs submitit: pip install submitit") from None
    slurm = slurm or SlurmOptions()
    if executor == "submitit-local":
        pool: Any = submitit.LocalExecutor(folder=str(folder))
        pool.update_parameters(timeout_min=slurm.time_minutes)
    elif executor == "slurm":
        pool = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    else:
        raise HarnessError(f"unknown executor {executor!r}; allowed: local, slurm, submitit-local")
    jobs = []
    for p in plans:
        if executor == "slurm":
            pool.update_parameters(
                timeout_min=slurm.time_minutes, slurm_partition=slurm.partition, cpus_per_task=slurm.cpus_per_task,
                mem_gb=slurm.mem_gb, gpus_per_node=slurm.gpus_per_node or p.config.train.nproc, tasks_per_node=1,
                name=f"harness-{p.recipe.name}-{p.variant.name}-s{p.seed}")
        job = pool.submit(run_one, str(p.recipe.path), p.variant.name, p.seed, str(p.results_root))
        log(f"submitted {p.variant.name} (seed {p.seed}) as job {job.job_id}")
        jobs.append((p, job))
    out = []
    for p, job in jobs:
        try:
            out.append(job.result())
        except Exception as exc:  # noqa: BLE001 - report which job failed, with submitit's log folder
            raise HarnessRuntimeError(f"job {job.job_id} ({p.variant.name}, seed {p.seed}) failed: {exc}; "
                                      f"logs in {folder}") from None
        log(f"finished {p.variant.name} (seed {p.seed})")
    return out
