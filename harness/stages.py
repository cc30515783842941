"""Content-addressed stages: data -> train -> evaluate, each cached under the hash of its inputs.

A stage's key holds exactly the config slice it depends on plus the hashes of the stages it
reads, so changing an axis invalidates only what is downstream. A stage folder appears by
atomic rename when complete; a half-done stage is simply absent and is redone. Every stage kind
is computed through `compute_once`, so processes sharing a cache compute each stage once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import VariantConfig
from harness.hashing import content_hash
from harness.paths import cache_root

STAGE_VERSION = 1  # bump when a stage's output format or semantics change


@dataclass(frozen=True)
class Stage:
    kind: str
    key: dict[str, Any]
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", content_hash({"stage": self.kind, "v": STAGE_VERSION, **self.key}))

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


def compute_once(stage: Stage, build: Callable[[Path], None]) -> bool:
    """Build `stage` unless it is done, once across processes (harness.locks); True if built here.

    `build(tmp)` writes the stage's files into a staging folder that becomes `stage.dir`.
    """
    from harness.locks import build_once

    return build_once(stage.dir, build, what=f"{stage.kind} stage {stage.hash}")
