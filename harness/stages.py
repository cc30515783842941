"""Content-addressed stages: data -> train -> evaluate, each cached under the hash of its inputs.

A stage's key holds exactly the config slice it depends on plus the hashes of the stages it
reads, so changing an axis invalidates only what is downstream. A stage folder appears by
atomic rename when complete; a half-done stage is simply absent and is redone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import VariantConfig
from harness.hashing import content_hash
from harness.paths import cache_root

STAGE_VERSION = 1  # bump when a stage's output format or semantics change
# Per-kind versions (absent = 1), so one stage's new format does not invalidate the others' caches.
# eval 2: the stage also keeps mteb's TaskResult JSON (mteb.json) and ModelMeta (model_meta.json).
KIND_VERSIONS = {"eval": 2}


@dataclass(frozen=True)
class Stage:
    kind: str
    key: dict[str, Any]
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        kind_version = {"kind_v": KIND_VERSIONS[self.kind]} if self.kind in KIND_VERSIONS else {}
        object.__setattr__(self, "hash", content_hash({"stage": self.kind, "v": STAGE_VERSION, **kind_version,
                                                       **self.key}))

    @property
    def dir(self) -> Path:
        return cache_root() / self.kind / self.hash

    def done(self) -> bool:
        return self.dir.is_dir()


def data_stage(config: VariantConfig) -> Stage:
    return Stage("data", {"data": config.data.model_dump(mode="json")})


def train_stage(config: VariantConfig) -> Stage:
    return Stage("train", {
        "data": data_stage(config).hash,
        "model": config.model.model_dump(mode="json"),
        # how often we log or checkpoint changes no weight: not part of the key
        "train": config.train.model_dump(mode="json", exclude={"log_every", "checkpoint_every"}),
    })


def eval_stage(config: VariantConfig, task_name: str, task_revision: str) -> Stage:
    key = {"train": train_stage(config).hash, "task": task_name, "revision": task_revision}
    if config.eval.bf16:  # only when on, so fp32 stages keep their hashes
        key["bf16"] = True
    return Stage("eval", key)
