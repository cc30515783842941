"""Experiment trackers (`train.report_to`) and the per-interval training meter behind the local log.

Every `log_every` steps the loop records loss (and, where the loss has them, its Matryoshka terms
`loss/mrl_<d>` and focal terms `loss/infonce`, `loss/focal`: harness.train.loss.LossTerms), lr, the
pre-clip gradient norm, examples/s and tokens/s over the interval, and device memory, into the
always-written `train_log.jsonl` and into each tracker named in `train.report_to`: tensorboard,
wandb, mlflow, trackio (each an optional extra: `pip install 'harness[tensorboard]'`). One tracker run per (variant, seed), named
`recipe/variant/seed-N` and grouped by recipe, with the resolved config and stage hashes attached;
the eval scores are added when the run is published. A tracker that cannot start (package missing,
no credentials, unreachable server) prints one warning line and training goes on without it.

Where files go: `$HARNESS_TRACKING_DIR` (default `<cache>/tracking`): `tensorboard/<recipe>/<variant>/
seed-N/` event files, `wandb/` (offline unless WANDB_MODE says otherwise), `mlruns/` (unless
MLFLOW_TRACKING_URI is set), trackio's local database (`TRACKIO_DIR`).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.envvars import scoped_env

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
RUN_ENV = "HARNESS_TRACKING_RUN"  # JSON identity of the run, set by the pipeline for the train stage


@dataclass(frozen=True)
class RunIdentity:
    recipe: str
    variant: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.recipe}/{self.variant}/seed-{self.seed}"


def tracking_env(recipe: str, variant: str, seed: int, data: str, train: str) -> dict[str, str]:
    """The environment that names the train stage's tracker run (inherited by torchrun ranks)."""
    return {RUN_ENV: json.dumps({"recipe": recipe, "variant": variant, "seed": seed,
                                 "stages": {"data": data, "train": train}})}


def identity(config: Any) -> RunIdentity:
    """The run's identity: from the pipeline (recipe, variant) when set, else the train stage hash."""
    raw = json.loads(os.environ.get(RUN_ENV) or "{}")
    if raw:
        return RunIdentity(raw["recipe"], raw["variant"], int(raw["seed"]), config.to_dict(), raw.get("stages", {}))
    from harness.stages import train_stage

    stage = train_stage(config)
    return RunIdentity("harness-train", stage.hash, config.train.seed, config.to_dict(), {"train": stage.hash})


def tracking_dir() -> Path:
    from harness.paths import cache_root

    return Path(os.environ.get("HARNESS_TRACKING_DIR") or cache_root() / "tracking")


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value if isinstance(value, int | float | str | bool) or value is None else json.dumps(value)
    return out


class Tracker(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def finish(self) -> None: ...


class TensorBoardTracker:
    def __init__(self, run: RunIdentity, root: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.dir = root / "tensorboard" / run.recipe / run.variant / f"seed-{run.seed}"
        self.writer = SummaryWriter(log_dir=str(self.dir))
        self.writer.add_text("config", "```\n" + json.dumps(run.config, indent=1, sort_keys=True) + "\n```")
        self.writer.add_text("stages", json.dumps(run.stages, sort_keys=True))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def finish(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, run: RunIdentity, root: Path) -> None:
        import wandb

        from harness.hashing import content_hash

        (root / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", run.recipe), name=run.name, group=run.recipe,
                              id=content_hash(run.name, 16), resume="allow", dir=str(root),
                              mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]
                              config={"config": run.config, "stages": run.stages}, reinit="finish_previous")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self) -> None:
        self.run.finish()


class MlflowTracker:
    """Through an `MlflowClient` bound to the store: mlflow's fluent API would set the tracking URI,
    the active experiment and run, and their environment variables, for the rest of the process."""

    def __init__(self, run: RunIdentity, root: Path) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param, RunTag
        from mlflow.tracking.context.registry import resolve_tags

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (root / "mlruns").resolve().as_uri()
        # A local folder store (no server, no database) needs MLFLOW_ALLOW_FILE_STORE in mlflow 3.x (it
        # keeps the store, in maintenance mode): set around this tracker's own calls only; a user's own
        # setting wins.
        local = not os.environ.get("MLFLOW_TRACKING_URI")
        self.env = {"MLFLOW_ALLOW_FILE_STORE": "true"} if local and "MLFLOW_ALLOW_FILE_STORE" not in os.environ else {}
        with scoped_env(self.env):
            self.client = client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(run.recipe)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(run.recipe)
            found = client.search_runs([experiment_id], filter_string=f"tags.mlflow.runName = '{run.name}'")
            if found:  # a resumed training continues its run
                self.run_id = found[0].info.run_id
                client.update_run(self.run_id, status="RUNNING")
                return
            self.run_id = client.create_run(experiment_id, run_name=run.name, tags=resolve_tags()).info.run_id
            params = _flat("", run.config, {})
            tags = {f"stage.{k}": v for k, v in run.stages.items()} | {"recipe": run.recipe}
            client.log_batch(self.run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()],
                             tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with scoped_env(self.env):
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def finish(self) -> None:
        with scoped_env(self.env):
            self.client.set_terminated(self.run_id)


class TrackioTracker:
    def __init__(self, run: RunIdentity, root: Path) -> None:
        import trackio

        self.trackio = trackio
        trackio.init(project=run.recipe, name=run.name, group=run.recipe, resume="allow",
                     config={"config": run.config, "stages": run.stages})

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.trackio.log(metrics, step=step)

    def finish(self) -> None:
        self.trackio.finish()


_CLASSES: dict[str, type] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker,
                             "trackio": TrackioTracker}


def start(names: Sequence[str], run: RunIdentity, root: Path | None = None,
          warn: Any = None) -> list[Tracker]:
    """The trackers that started; each that cannot start is one warning line (training goes on)."""
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    root = root or tracking_dir()
    started: list[Tracker] = []
    for name in names:
        try:
            started.append(_CLASSES[name](run, root))
        except ImportError as exc:
            warn(f"warning: train.report_to {name}: cannot start ({exc.name or exc} is not installed: "
                 f"pip install 'harness[{name}]'); training goes on without it")
        except Exception as exc:  # noqa: BLE001 - a tracker never stops training
            warn(f"warning: train.report_to {name}: cannot start ({type(exc).__name__}: "
                 f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); training goes on without it")
    return started


def safe(trackers: list[Tracker], method: str, *args: Any) -> None:
    """Call a tracker method; one that fails later is dropped with a warning, training goes on."""
    for tracker in list(trackers):
        try:
            getattr(tracker, method)(*args)
        except Exception as exc:  # noqa: BLE001
            trackers.remove(tracker)
            print(f"warning: tracker {type(tracker).__name__} failed ({type(exc).__name__}: {exc}); dropped",
                  file=sys.stderr, flush=True)


def log_scores(config: Any, scores: dict[str, Any], step: int, stages: dict[str, str],
               recipe: str, variant: str) -> None:
    """Attach a published run's eval scores (main score per task, x100) to its tracker runs."""
    if not config.train.report_to:
        return
    run = RunIdentity(recipe, variant, config.train.seed, config.to_dict(), stages)
    trackers = start(config.train.report_to, run)
    metrics = {f"eval/{task}": 100 * float(entry["main_score"]) for task, entry in scores.items()}
    safe(trackers, "log", metrics, step)
    safe(trackers, "finish")


# ----------------------------------------------------------------------------- the meter


def memory_mb(device: Any) -> float:
    """Peak device memory: CUDA's allocator peak, else this process's peak resident set."""
    import torch

    if getattr(device, "type", "") == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)



# Fields of a train_log.jsonl entry that measure the machine, not the run: they differ between two
# runs of the same seed (compare runs on `deterministic_fields` only).
MEASURED_FIELDS = ("examples_per_second", "tokens_per_second", "memory_mb")


def deterministic_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """A log entry without its wall-clock and memory measurements."""
    return {k: v for k, v in entry.items() if k not in MEASURED_FIELDS}

class StepMeter:
    """Counts examples and tokens between log points and writes one log entry per point, to the
    local log and every tracker (rank 0 only; examples and tokens are this rank's x world size)."""

    def __init__(self, config: Any, world: Any, device: Any, tokenizer: Any, enabled: bool) -> None:
        self.config, self.world, self.device, self.tokenizer = config, world, device, tokenizer
        self.lengths = (config.model.query_max_length, config.model.passage_max_length)
        self.examples = self.tokens = 0
        self.since = time.perf_counter()
        self.trackers: list[Tracker] = start(config.train.report_to, identity(config)) if (
            enabled and config.train.report_to) else []

    def count(self, queries: list[str], passages: list[str]) -> None:
        self.examples += len(queries)
        for texts, limit in ((queries, self.lengths[0]), (passages, self.lengths[1])):
            ids = self.tokenizer(texts, truncation=True, max_length=limit, add_special_tokens=True)["input_ids"]
            self.tokens += sum(len(i) for i in ids)

    def entry(self, step: int, loss: float, lr: float, grad_norm: float | None,
              terms: dict[str, float] | None = None) -> dict[str, Any]:
        """One log entry; `terms` (the loss's Matryoshka / focal parts, harness.train.loss.LossTerms)
        become `loss/<name>` keys beside `loss`, only those the loss has."""
        now = time.perf_counter()
        elapsed = max(now - self.since, 1e-9)
        size = getattr(self.world, "size", 1)
        entry = {"step": step, "loss": round(loss, 6),
                 **{f"loss/{name}": round(value, 6) for name, value in (terms or {}).items()}, "lr": lr,
                 "grad_norm": None if grad_norm is None else round(grad_norm, 6),
                 "examples_per_second": round(self.examples * size / elapsed, 3),
                 "tokens_per_second": round(self.tokens * size / elapsed, 1),
                 "memory_mb": memory_mb(self.device)}
        self.examples = self.tokens = 0
        self.since = now
        metrics = {f"train/{k}": float(v) for k, v in entry.items() if k != "step" and v is not None}
        safe(self.trackers, "log", metrics, step)
        return entry

    def finish(self) -> None:
        safe(self.trackers, "finish")
