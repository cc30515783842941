"""Content-addressed stages: data -> train -> evaluate, each cached under the hash of its inputs.

A stage's key holds exactly the config slice it depends on plus the hashes of the stages it
reads, so changing an axis invalidates only what is downstream. A stage folder appears by
atomic rename when complete; a half-done stage is simply absent and is redone. Every stage kind
is computed through `compute_once`, so processes sharing a cache compute each stage once.

Precision is part of the train and eval keys as it *ran*: `bf16: auto` resolves per machine
(harness.devices), so the same recipe trains in bf16 on an A100 and in float32 on an AVX2 laptop,
and those are different stages. A stage asked for with `auto` is looked up under this machine's
precision first, then under the other one, so a SLURM parent on a CPU login node finds what its
GPU jobs computed; when neither exists it is computed in this machine's precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.config import VariantConfig
from harness.hashing import content_hash
from harness.paths import cache_root

# Bump a kind's version when its output format or semantics change (old caches are then ignored).
STAGE_VERSIONS: dict[str, int] = {
    # 2: the table is rows.arrow (Arrow IPC, memory-mapped), not rows.jsonl; the filter teacher is keyed
    # by its contents and precision
    # 3: mining rules (filter.negatives); card counts `mined` negatives (was `window`) and the rule's screening
    # 4: file sources keyed by content, Hub datasets by commit; the card's filter.teacher names the machine
    # that encoded the ranking
    # 5: the teacher pass works task by task (texts deduplicated and encoding units cut per task, so a
    # text shared by two tasks is encoded in another batch: rankings may move in the last bits)
    "data": 5,
    "contamination": 1,
    # 2: float32 master weights, precision in the key, backbone folders keyed by content
    # 3: summary.json names the machine (CPU model + capability, or GPU + compute capability); Hub backbones
    # keyed by commit
    # 4: model/'s sentence-transformers module files are written by harness.st_folder (the format every
    # sentence-transformers version reads), not by a second load-and-save through sentence-transformers
    "train": 4,
    # 2: precision in the key; 3: the stage also keeps mteb's TaskResult JSON (mteb.json) and ModelMeta
    # (model_meta.json); 4: harness retrieval tasks stop at k = 100 (no @1000 metrics in mteb.json);
    # 5: the mteb version is in the key (harness.evaluator), the record names its machine
    "eval": 5,
}


@dataclass(frozen=True)
class Stage:
    kind: str
    key: dict[str, Any]
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        version = STAGE_VERSIONS.get(self.kind, 1)
        object.__setattr__(self, "hash", content_hash({"stage": self.kind, "v": version, **self.key}))

    @property
    def dir(self) -> Path:
        return cache_root() / self.kind / self.hash

    def done(self) -> bool:
        return self.dir.is_dir()


def data_stage(config: VariantConfig) -> Stage:
    from harness.inputs import data_key

    data = data_key(config.data)  # file sources by content, Hub datasets by commit
    spec = config.data.filter
    if spec is None:
        return Stage("data", {"data": data})
    from harness.backbones.fingerprint import backbone_identity

    # The teacher is keyed by its weights and the precision its pass ran in, not by device.
    data["filter"] = {k: v for k, v in data["filter"].items() if k not in ("device", "bf16")}
    data["filter"]["teacher"] = backbone_identity(spec.teacher)
    return _first_done([Stage("data", {"data": data, "teacher_precision": precision})
                        for precision in precisions_to_try(spec.bf16, spec.device)])


def precisions_to_try(setting: bool | str, device_spec: str) -> list[str]:
    """Precision names to look a stage up under: this machine's first; both when the recipe says auto."""
    from harness.devices import resolve_compute

    local = resolve_compute(device_spec, setting).precision.name  # type: ignore[arg-type]
    if setting != "auto":
        return [local]
    return [local, "fp32" if local == "bf16" else "bf16"]


def _first_done(candidates: list[Stage]) -> Stage:
    return next((s for s in candidates if s.done()), candidates[0])


def train_stage(config: VariantConfig) -> Stage:
    from harness.backbones.fingerprint import backbone_identity

    model = config.model.model_dump(mode="json")
    model["backbone"] = backbone_identity(config.model.backbone)
    # how often we log or checkpoint, and which device runs it, change no weight: not in the key
    train = config.train.model_dump(mode="json", exclude={"log_every", "checkpoint_every", "device", "bf16",
                                                          "report_to"})
    return _first_done([
        Stage("train", {"data": data_stage(config).hash, "model": model, "train": train, "precision": precision})
        for precision in precisions_to_try(config.train.bf16, config.train.device)
    ])


EvalModel = tuple[Literal["train", "baseline"], str]


def eval_task_stage(model: EvalModel, task_name: str, task_revision: str, precision: str) -> Stage:
    """The one eval stage key: the model scored (`("train", train stage hash)` for a variant,
    `("baseline", model hash)` for `harness eval MODEL`), the task and its data revision, the
    precision it encodes in and the evaluator. Variants and baselines both build it here."""
    from harness.evaluator import evaluator_identity

    kind, model_hash = model
    return Stage("eval", {kind: model_hash, "task": task_name, "revision": task_revision, "precision": precision,
                          "evaluator": evaluator_identity()})


def eval_stage(config: VariantConfig, task_name: str, task_revision: str) -> Stage:
    train = train_stage(config).hash
    return _first_done([eval_task_stage(("train", train), task_name, task_revision, precision)
                        for precision in precisions_to_try(config.eval.bf16, config.eval.device)])


def compute_once(stage: Stage, build: Callable[[Path], None]) -> bool:
    """Build `stage` unless it is done, once across processes (harness.locks); True if built here.

    `build(tmp)` writes the stage's files into a staging folder that becomes `stage.dir`.
    """
    from harness.locks import build_once

    return build_once(stage.dir, build, what=f"{stage.kind} stage {stage.hash}")


def sweep_stale(stage: Stage) -> None:
    """On a cache hit, remove staging that dead writers of `stage` left next to it (a job killed on
    another host, an old version's run). No lock is needed: only provably dead owners' folders go."""
    from harness.atomic import remove_stale_staging

    remove_stale_staging(stage.dir)
