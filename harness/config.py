"""The variant config: everything that decides one trained-and-evaluated embedder.

A recipe's `base` is one of these; every ablation axis is a dotted path into it. Each stage
(data, train, evaluate) hashes only the slice of this config it depends on, so changing one
axis re-runs only the stages downstream of it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KALM_INSTRUCTION_TEMPLATE = "Instruct: {instruction} \n Query: "

SourceKind = Literal["stdlib-code", "cldr-bitext", "flag-jsonl"]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a recipe must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class ModelConfig(_Strict):
    backbone: str = Field("minilm", description="embedded name (minilm, tiny-qwen2), Hub id or local folder")
    pooling: Literal["mean", "last_token", "cls"] = "mean"
    attention: Literal["causal", "bidirectional"] = "causal"
    normalize: bool = True
    instructions: bool = Field(True, description="prepend KaLM's query-side instruction template")
    instruction_template: str = KALM_INSTRUCTION_TEMPLATE
    query_max_length: int = Field(64, ge=4)
    passage_max_length: int = Field(256, ge=4)
    trust_remote_code: bool = False


class SourceConfig(_Strict):
    kind: SourceKind | None = Field(None, description="builder; defaults to the source's name")
    path: str | None = Field(None, description="file or folder, for flag-jsonl")
    weight: float = Field(1.0, ge=0.0, description="share of the mix; 0 drops the source")
    max_rows: int | None = Field(None, ge=1)
    instruction: str | None = Field(None, description="query-side task description; default per kind")
    langs: list[str] | None = Field(None, description="cldr-bitext languages (babel codes)")


class DataConfig(_Strict):
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    total_rows: int | None = Field(None, ge=1, description="rows in the mix; None = every available row")
    hard_negatives: int = Field(0, ge=0, description="hard negatives kept per row (rows that have them)")
    seed: int = 0

    @model_validator(mode="after")
    def _resolve_kinds(self) -> DataConfig:
        allowed = SourceKind.__args__  # type: ignore[attr-defined]
        for name, source in self.sources.items():
            if source.kind is None:
                if name not in allowed:
                    raise ValueError(
                        f"source {name!r} needs a 'kind' (one of {', '.join(allowed)}) "
                        "because its name is not a builder name"
                    )
                source.kind = name  # type: ignore[assignment]
            if source.kind == "flag-jsonl" and not source.path:
                raise ValueError(f"source {name!r} of kind flag-jsonl needs a 'path'")
        if self.sources and not any(s.weight > 0 for s in self.sources.values()):
            raise ValueError("every source has weight 0: the mix would be empty")
        return self


class TrainConfig(_Strict):
    steps: int | None = Field(None, ge=1, description="optimizer steps; None = `epochs` over the data")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    temperature: float = Field(0.05, gt=0, description="InfoNCE temperature (KaLM: 0.01)")
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = 0
    log_every: int = Field(10, ge=1)


class EvalConfig(_Strict):
    tasks: list[str] = Field(default_factory=lambda: ["HarnessCodeRetrieval", "HarnessCLDRBitextMining"])
    batch_size: int = Field(64, ge=1)

    @field_validator("tasks")
    @classmethod
    def _non_empty(cls, tasks: list[str]) -> list[str]:
        if not tasks:
            raise ValueError("eval.tasks is empty: name at least one task")
        return tasks


class VariantConfig(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
