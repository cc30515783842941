"""Where runs execute: here, one after another (default), or as jobs through submitit
(SLURM on a cluster; submitit's local executor for a laptop and for tests).

With an executor each (variant, seed) is one training job (data -> train) and then N evaluation
jobs, one per task shard (`--eval-shards N`), each started once its training stage exists: on
SLURM through a job dependency (afterok), with the local executor by waiting for the training job
before submitting its shards. A job reloads the recipe by path and runs the same idempotent, cached
stages as a local run, so stages already done are skipped and a failed job is redone by running the
same command again. The parent publishes results/ and writes the report once every job is done.

Precision belongs to the machine that computes: the parent sends each job its run's config, not a
stage hash resolved on the login node, and publishes the stages the jobs report back (an arm
trained in bf16 on a GPU node is published as such, though the login node would pick float32).
Jobs are requeued by submitit on preemption or timeout and resume (harness/jobs.py).
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
    setup: tuple[str, ...] = ()  # shell lines each job runs first (module load, source venv/bin/activate)


# What runs inside a job is harness/jobs.py (TrainJob, EvalJob): it plans on its own node.


# ----------------------------------------------------------------------------- the parent


@dataclass
class _Job:
    what: str  # "training of base (seed 0)", "eval shard 2/4 of base (seed 0)"
    handle: Any  # a submitit Job
    tasks: list[str] = field(default_factory=list)
    run: int = -1  # index of its run in the plans
    after: _Job | None = None  # the training job this shard waits for
    produced: dict[str, Any] | None = None  # what the job returned: the stages it computed (harness.jobs)


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
            "job_name": name.replace("/", "_"), "additional_parameters": extra, "setup": list(slurm.setup)}


def _executor(kind: str, folder: Path, slurm: SlurmOptions) -> Any:
    try:
        import submitit
    except ImportError:
        raise HarnessError("executor needs submitit: pip install submitit") from None
    if kind == "submitit-local":
        pool = submitit.LocalExecutor(folder=str(folder))
        pool.update_parameters(timeout_min=slurm.time_minutes, setup=list(slurm.setup))
        return pool
    if kind == "slurm":
        try:
            return submitit.SlurmExecutor(folder=str(folder))
        except RuntimeError as exc:  # no srun/sbatch here
            raise HarnessError(f"--executor slurm: {exc}") from None
    raise HarnessError(f"unknown executor {kind!r}; allowed: {', '.join(EXECUTORS)}")


def _outcome(job: _Job) -> str | None:
    """None when the job succeeded (its result kept in `job.produced`), else one line naming it,
    its tasks and its log file."""
    try:
        job.produced = job.handle.result()
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
    from harness.jobs import EvalJob, TrainJob
    from harness.pipeline import check_external_teachers, teacher_runs

    slurm = slurm or SlurmOptions()
    pool = _executor(executor, folder, slurm)
    # the run's config (bf16: auto unresolved), not a stage hash resolved on this machine
    args = [(str(p.recipe.path), p.variant.name, p.seed, str(p.results_root), p.config.to_dict()) for p in plans]

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
        trains[i] = _Job(f"training of {_label(p)}", pool.submit(TrainJob(), *args[i]))
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
            job = _Job(what, pool.submit(EvalJob(), *args[i], shard), tasks=shard, after=train, run=i)
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

    _publish_produced(plans, trains, shards, log)
    if failures:
        raise HarnessRuntimeError(f"{len(failures)} job(s) did not finish; every finished stage is cached, so running "
                                  f"the same command again redoes only what is missing. Job logs: {folder}\n  - "
                                  + "\n  - ".join(failures))


def _publish_produced(plans: list[RunPlan], trains: dict[int, _Job], shards: list[_Job], log: Any) -> None:
    """Publish every complete run as its jobs computed it: the stages a job reports back replace the
    ones planned here, whose precision this machine resolved (a login node without bf16 plans float32
    stages for arms its GPU jobs train in bf16)."""
    import dataclasses

    from harness.jobs import stage_from
    from harness.pipeline import publish

    shards_of: dict[int, list[_Job]] = {}
    for job in shards:
        shards_of.setdefault(job.run, []).append(job)
    for i, p in enumerate(plans):
        produced = p
        train = trains.get(i)
        if train is not None and train.produced:
            stages = {kind: stage_from(rec) for kind, rec in train.produced.items()}
            produced = dataclasses.replace(produced, **stages)
        evals = dict(produced.evals)
        for job in shards_of.get(i, []):
            evals.update({t: stage_from(rec) for t, rec in (job.produced or {}).items()})
        produced = dataclasses.replace(produced, evals=evals)
        if not _needs_training(produced) and all(s.done() for s in produced.evals.values()):
            log(f"publishing {_label(p)}: trained in {produced.train.key['precision']}, evaluated in "
                f"{', '.join(sorted({s.key['precision'] for s in produced.evals.values()}))}")
            publish(produced, log)
