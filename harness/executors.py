"""Where runs execute: here, one after another (default), or as jobs through submitit
(SLURM on a cluster; submitit's local executor for a laptop and for tests).

With an executor each (variant, seed) is one training job (data -> train) and then N evaluation
jobs, one per task shard (`--eval-shards N`), each started once its training stage exists: on
SLURM through a job dependency (afterok), with the local executor by waiting for the training job
before submitting its shards. A job reloads the recipe by path and runs the same idempotent, cached
stages as a local run, so stages already done are skipped and a failed job is redone by running the
same command again. The parent publishes results/ and writes the report once every job is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, HarnessRuntimeError

if TYPE_CHECKING:
    from harness.pipeline import RunPlan

EXECUTORS = ("local", "slurm", "submitit-local")


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_minutes: int = 24 * 60
    cpus_per_task: int = 8
    mem_gb: int = 64
    gpus_per_node: int | None = None  # training jobs; default: the variant's train.nproc
    eval_gpus: int = 1  # each evaluation shard


# ----------------------------------------------------------------------------- inside a job


def _load_plan(recipe_path: str, variant_name: str, seed: int, results_root: str,
               train_hash: str) -> tuple[RunPlan, dict[str, tuple[Any, str]]]:
    from harness.pipeline import plan, task_revisions
    from harness.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    tasks = task_revisions(recipe)
    plans = [p for p in plan(recipe, Path(results_root), tasks) if p.variant.name == variant_name and p.seed == seed]
    if not plans:
        raise HarnessError(f"{recipe_path}: no variant {variant_name!r} with seed {seed}")
    if plans[0].train.hash != train_hash:
        raise HarnessError(f"{recipe_path}: changed since the job was submitted (variant {variant_name!r}, seed "
                           f"{seed} now trains stage {plans[0].train.hash}, not {train_hash}); run ablate again")
    return plans[0], tasks


def train_job(recipe_path: str, variant_name: str, seed: int, results_root: str, train_hash: str) -> str:
    """One (variant, seed) through data (+ contamination) -> train; returns the train stage hash."""
    from harness.pipeline import run_data, run_train

    p, tasks = _load_plan(recipe_path, variant_name, seed, results_root, train_hash)
    run_data(p, tasks, print)
    run_train(p, print, show_progress=False)
    return p.train.hash


def eval_job(recipe_path: str, variant_name: str, seed: int, results_root: str, train_hash: str,
             task_names: list[str]) -> list[str]:
    """One task shard of a trained (variant, seed): evaluates the shard's tasks not cached yet."""
    from harness.pipeline import run_eval

    p, tasks = _load_plan(recipe_path, variant_name, seed, results_root, train_hash)
    run_eval(p, tasks, print, show_progress=False, only=task_names)
    return [p.evals[t].hash for t in task_names]


# ----------------------------------------------------------------------------- the parent


@dataclass
class _Job:
    what: str  # "training of base (seed 0)", "eval shard 2/4 of base (seed 0)"
    handle: Any  # a submitit Job
    tasks: list[str] = field(default_factory=list)
    after: _Job | None = None  # the training job this shard waits for


def _label(p: RunPlan) -> str:
    return f"{p.variant.name} (seed {p.seed})"


def slurm_parameters(p: RunPlan, slurm: SlurmOptions, *, shard: str | None = None,
                     after: str | None = None) -> dict[str, Any]:
    """`submitit.SlurmExecutor` parameters of one training job (`shard=None`) or evaluation shard."""
    extra: dict[str, Any] = {}
    if after is not None:  # start once the training job succeeded; cancelled by SLURM if it failed
        extra = {"dependency": f"afterok:{after}", "kill-on-invalid-dep": "yes"}
    gpus = slurm.eval_gpus if shard else (slurm.gpus_per_node or p.config.train.nproc)
    name = f"harness-{p.recipe.name}-{p.variant.name}-s{p.seed}-" + (f"eval{shard}" if shard else "train")
    return {"time": slurm.time_minutes, "partition": slurm.partition, "cpus_per_task": slurm.cpus_per_task,
            "mem": f"{slurm.mem_gb}GB", "gpus_per_node": gpus, "ntasks_per_node": 1,
            "job_name": name.replace("/", "_"), "additional_parameters": extra}


def _executor(kind: str, folder: Path, slurm: SlurmOptions) -> Any:
    try:
        import submitit
    except ImportError:
        raise HarnessError("executor needs submitit: pip install submitit") from None
    if kind == "submitit-local":
        pool = submitit.LocalExecutor(folder=str(folder))
        pool.update_parameters(timeout_min=slurm.time_minutes)
        return pool
    if kind == "slurm":
        try:
            return submitit.SlurmExecutor(folder=str(folder))
        except RuntimeError as exc:  # no srun/sbatch here
            raise HarnessError(f"--executor slurm: {exc}") from None
    raise HarnessError(f"unknown executor {kind!r}; allowed: {', '.join(EXECUTORS)}")


def _outcome(job: _Job) -> str | None:
    """None when the job succeeded, else one line naming it, its tasks and its log file."""
    try:
        job.handle.result()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure is reported with submitit's log path
        text = str(exc)
        if "----------------------" in text:  # submitit's FailedJobError: the job's traceback between rulers
            text = text.split("----------------------")[1]
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        tasks = f"; tasks: {', '.join(job.tasks)}" if job.tasks else ""
        return (f"{job.what} failed [job {job.handle.job_id}]{tasks}; log: {job.handle.paths.stderr}"
                f"\n      {lines[-1] if lines else type(exc).__name__}")


def _needs_training(p: RunPlan) -> bool:
    return not (p.data.done() and p.contamination.done() and p.train.done())


def submit_runs(plans: list[RunPlan], tasks: dict[str, tuple[Any, str]], *, executor: str, folder: Path,
                slurm: SlurmOptions | None = None, eval_shards: int = 1, log: Any = print) -> None:
    """Training jobs, then evaluation shards, wait for all; publish every run that is complete.
    Raises HarnessRuntimeError naming each failed job (its tasks and log file) after publishing the rest."""
    from harness.evaluate.shards import split_tasks, task_size
    from harness.pipeline import check_external_teachers, publish, teacher_runs

    slurm = slurm or SlurmOptions()
    pool = _executor(executor, folder, slurm)
    args = [(str(p.recipe.path), p.variant.name, p.seed, str(p.results_root), p.train.hash) for p in plans]

    check_external_teachers(plans)
    index = {(p.variant.name, p.seed): i for i, p in enumerate(plans)}  # plans come teachers first
    trains: dict[int, _Job] = {}
    untrained: set[int] = set()  # runs whose training (or a teacher's) failed: nothing more is submitted
    failures: list[str] = []
    ended: dict[int, str | None] = {}  # training jobs waited for: their failure (None = finished)

    def wait_training(i: int) -> str | None:
        """Wait for run i's training job (once), log how it ended; its failure line or None."""
        if i not in ended:
            ended[i] = _outcome(trains[i])
            log(f"finished {trains[i].what}" if ended[i] is None else f"FAILED: {ended[i]}")
            if ended[i] is not None:
                untrained.add(i)
                failures.append(ended[i])
        return ended[i]

    for i, p in enumerate(plans):
        if not _needs_training(p):
            log(f"training of {_label(p)} cached ({p.train.hash})")
            continue
        teachers = [index[key] for key in teacher_runs(p) if index.get(key) in trains.keys() | untrained]
        if executor != "slurm":  # no job dependencies here: a teacher's training must end first
            for j in teachers:
                if j in trains:
                    wait_training(j)
        if any(j in untrained for j in teachers):
            untrained.add(i)
            failures.append(f"training of {_label(p)} not submitted: the training of its teacher failed")
            continue
        if executor == "slurm":
            after = ":".join(trains[j].handle.job_id for j in teachers) or None
            pool.update_parameters(**slurm_parameters(p, slurm, after=after))
        trains[i] = _Job(f"training of {_label(p)}", pool.submit(train_job, *args[i]))
        after_text = f" after {', '.join(trains[j].what for j in teachers)}" if teachers else ""
        log(f"submitted training of {_label(p)} as job {trains[i].handle.job_id}{after_text}")

    sizes: dict[str, int] = {}
    shards: list[_Job] = []
    for i, p in enumerate(plans):
        if i in untrained:  # its training, or its teacher's, failed (already listed)
            if i in trains:
                failures.append(f"evaluation of {_label(p)} not submitted: its training failed")
            continue
        for t in p.evals:
            if t not in sizes:
                sizes[t] = task_size(tasks[t][0])
        split = split_tasks({t: sizes[t] for t in p.evals}, eval_shards)
        train = trains.get(i)
        if train is not None and executor != "slurm":  # no job dependencies here: wait, in order
            if wait_training(i):
                failures.append(f"evaluation of {_label(p)} not submitted: its training failed")
                continue
            train = None
        for k, shard in enumerate(split, start=1):
            what = f"eval shard {k}/{len(split)} of {_label(p)}"
            if all(p.evals[t].done() for t in shard):
                log(f"{what} cached ({len(shard)} task(s))")
                continue
            if executor == "slurm":
                pool.update_parameters(**slurm_parameters(p, slurm, shard=f"{k}of{len(split)}",
                                                          after=train.handle.job_id if train else None))
            job = _Job(what, pool.submit(eval_job, *args[i], shard), tasks=shard, after=train)
            shards.append(job)
            log(f"submitted {what} ({len(shard)} task(s): {', '.join(shard)}) as job {job.handle.job_id}")

    failed_trains: set[int] = set()
    if executor == "slurm":
        for train in trains.values():
            failure = _outcome(train)
            log(f"finished {train.what}" if failure is None else f"FAILED: {failure}")
            if failure:
                failures.append(failure)
                failed_trains.add(id(train))
    for job in shards:
        if job.after is not None and id(job.after) in failed_trains:
            job.handle.cancel(check=False)
            failures.append(f"{job.what} not run: its training failed [job {job.handle.job_id} cancelled]")
            continue
        failure = _outcome(job)
        log(f"finished {job.what}" if failure is None else f"FAILED: {failure}")
        if failure:
            failures.append(failure)

    for p in plans:
        if not _needs_training(p) and all(s.done() for s in p.evals.values()):
            publish(p)
    if failures:
        raise HarnessRuntimeError(f"{len(failures)} job(s) did not finish; every finished stage is cached, so running "
                                  f"the same command again redoes only what is missing. Job logs: {folder}\n  - "
                                  + "\n  - ".join(failures))
