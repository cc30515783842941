"""The variant config: everything that decides one trained-and-evaluated embedder.

A recipe's `base` is one of these; every ablation axis is a dotted path into it. Each stage
(data, train, evaluate) hashes only the slice of this config it depends on, so changing one
axis re-runs only the stages downstream of it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from harness.devices import DEVICE_PATTERN
from harness.paths import name_problem

# Numbers are strict: `steps: true` or `lr: "fast"` are errors, not 1 and a crash later; an int
# is a valid float (`lr: 1`). Floats must be finite (`1e400` reads as inf) and every numeric key
# has bounds that make sense for it, so `steps: 1e30` fails at load, not after hours of work.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_LENGTH = 1 << 17  # tokens per text
MAX_ROWS = 10**10
MAX_BATCH = 1 << 16

KALM_INSTRUCTION_TEMPLATE = "Instruct: {instruction} \n Query: "

DEVICE_HELP = "auto (cuda:LOCAL_RANK under torchrun, cuda when available, else cpu), cpu, cuda, cuda:N, mps"
BF16 = Annotated[bool, Strict()] | Literal["auto"]
BF16_HELP = ("bf16 autocast: auto = only where the device runs bf16 natively (CUDA with bf16 support, a CPU with "
             "AVX512_BF16/AMX or a calibration showing bf16 no slower than float32), true = always, false = never")

SourceKind = Literal["stdlib-code", "cldr-bitext", "febrl-tuples", "febrl-pairs", "table-columns", "flag-jsonl", "parquet",
                     "hf-dataset", "synth"]
PATH_KINDS = {"flag-jsonl", "parquet"}


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a recipe must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


def _reference_form(spec: str) -> str:
    """A `variant:` reference must be well formed at load time (it is resolved later, lazily)."""
    from harness.errors import HarnessError
    from harness.refsyntax import is_reference, parse

    if is_reference(spec):
        try:
            parse(spec)
        except HarnessError as exc:
            raise ValueError(str(exc)) from None
    return spec


class ModelConfig(_Strict):
    backbone: str = Field("minilm", description="embedded name (minilm, tiny-qwen2), Hub id, local folder, or "
                                                "a trained variant: variant:RECIPE/VARIANT[@SEED]")

    pooling: Literal["mean", "last_token", "cls"] = "mean"
    attention: Literal["causal", "bidirectional"] = "causal"
    normalize: bool = True
    instructions: bool = Field(True, description="prepend KaLM's query-side instruction template")
    instruction_template: str = KALM_INSTRUCTION_TEMPLATE
    query_max_length: Int = Field(64, ge=4, le=MAX_LENGTH)
    passage_max_length: Int = Field(256, ge=4, le=MAX_LENGTH)
    trust_remote_code: bool = False

    @field_validator("backbone")
    @classmethod
    def _backbone_form(cls, value: str) -> str:
        return _reference_form(value)


class SynthConfig(_Strict):
    """Persona-based synthetic data (KaLM): an LLM brainstorms a task with a persona as system
    prompt, then writes a (query, positive, hard negative) example for it."""

    backend: Literal["transformers", "openai"] = "transformers"
    model: str = Field("Qwen/Qwen2-72B-Instruct", description="Hub id / folder (transformers) or served model name")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (vLLM, llama.cpp server, ...)")
    personas: str = Field("proj-persona/PersonaHub", description="persona file (txt / jsonl) or HF dataset id")
    personas_limit: Int | None = Field(None, ge=1, le=MAX_ROWS)
    n_examples: Int = Field(1000, ge=1, le=MAX_ROWS)
    kinds: list[str] = Field(default_factory=lambda: ["short-long", "long-short", "short-short", "long-long",
                                                      "classification", "sts"])
    languages: list[str] = Field(default_factory=lambda: ["English"])
    temperature: Float = Field(1.0, ge=0, le=10)
    max_tokens: Int = Field(1024, ge=16, le=MAX_LENGTH)
    max_retries: Int = Field(2, ge=0, le=100)
    seed: Int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _endpoint(self) -> SynthConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("synth.backend openai needs a base_url")
        return self


class SourceConfig(_Strict):
    kind: SourceKind | None = Field(None, description="builder; defaults to the source's name")
    path: str | None = Field(None, description="file or folder, for flag-jsonl and parquet")
    dataset: str | None = Field(None, description="hf-dataset: Hub id or local folder")
    subset: str | None = Field(None, description="hf-dataset: configuration name")
    split: str = Field("train", description="hf-dataset: split")
    revision: str | None = Field(None, description="hf-dataset from the Hub: branch, tag or commit; resolved to a "
                                 "commit SHA at plan time (default: the default branch)")
    task: str | None = Field(None, description="task label for every row (default: per file / subset)")
    on_error: Literal["fail", "skip"] = Field("fail", description="malformed rows: stop, or skip and count")
    synth: SynthConfig | None = Field(None, description="kind synth: how to generate the rows")
    weight: Float = Field(1.0, ge=0.0, le=1e6, description="share of the mix; 0 drops the source")
    max_rows: Int | None = Field(None, ge=1, le=MAX_ROWS)
    instruction: str | None = Field(None, description="query-side task description; default per kind")
    langs: list[str] | None = Field(None, description="cldr-bitext languages (babel codes)")


# Each positive-aware mining rule's parameter and NV-Retriever's best value for it (None: none published).
NEGATIVE_PARAMETERS: dict[str, tuple[str, float | None]] = {
    "top_k_abs": ("max_score", None),
    "margin_pos": ("margin", 0.05),
    "perc_pos": ("percent", 0.95),
}


class NegativesConfig(_Strict):
    """Which teacher-ranked candidates may become hard negatives (harness.data.mining): KaLM's rank
    `window`, or NV-Retriever's positive-aware rules (arXiv 2407.15831) that remove candidates scoring
    too close to the positive as likely false negatives."""

    method: Literal["window", "top_k_abs", "margin_pos", "perc_pos"] = Field(
        "window", description="window = teacher ranks filter.window (KaLM); top_k_abs = below max_score; "
        "margin_pos = below positive score - margin; perc_pos = below percent x positive score (NV-Retriever)")
    max_score: Float | None = Field(None, ge=-1, le=1, description="top_k_abs: absolute teacher-score ceiling")
    margin: Float | None = Field(None, ge=0, le=2, description="margin_pos: ceiling = positive score - margin "
                                 "(default 0.05)")
    percent: Float | None = Field(None, gt=0, le=1, description="perc_pos: ceiling = percent x positive score "
                                  "(default 0.95, NV-Retriever's best)")
    sampling: Literal["hardest", "random"] | None = Field(
        None, description="among eligible candidates: hardest first, or random with data.seed; null = the "
        "method's own (random in the window, hardest for the positive-aware rules)")

    @model_validator(mode="after")
    def _parameters(self) -> NegativesConfig:
        own = NEGATIVE_PARAMETERS.get(self.method, (None, None))[0]
        for method, (name, default) in NEGATIVE_PARAMETERS.items():
            if name != own and getattr(self, name) is not None:
                raise ValueError(f"negatives.{name} belongs to method {method}, not {self.method}")
            if name == own and getattr(self, name) is None:
                if default is None:
                    raise ValueError(f"negatives.method {method} needs negatives.{name} (a teacher-score ceiling)")
                setattr(self, name, default)
        return self


class FilterConfig(_Strict):
    """KaLM's ranking-consistency filtering and hard-negative mining, per task, with a teacher."""

    teacher: str = Field("minilm", description="teacher embedder: embedded name, Hub id, local folder, or a "
                                               "trained variant: variant:RECIPE/VARIANT[@SEED] (KaLM's teacher is a "
                                               "previously trained embedder)")
    teacher_pooling: Literal["mean", "last_token", "cls"] = "mean"
    top_k: Int | None = Field(50, ge=0, le=100_000, description="keep a row only if the teacher ranks its positive "
                              "at 0-based rank <= top_k, i.e. in its top top_k + 1 (KaLM drops pos_score < "
                              "scores[top_k]); null = keep all")
    window: tuple[Int, Int] = Field((50, 100), description="teacher ranks [lo, hi) to mine negatives from "
                                    "(negatives.method window)")
    negatives: NegativesConfig = Field(default_factory=NegativesConfig,
                                       description="mining rule: KaLM's window or NV-Retriever's positive-aware rules")
    depth: Int = Field(128, ge=1, le=100_000, description="ranks kept by the teacher pass")
    max_length: Int = Field(256, ge=4, le=MAX_LENGTH)
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)
    bf16: BF16 = Field("auto", description=BF16_HELP)

    @field_validator("teacher")
    @classmethod
    def _teacher_form(cls, value: str) -> str:
        return _reference_form(value)

    @model_validator(mode="after")
    def _window(self) -> FilterConfig:
        lo, hi = self.window
        if not 0 <= lo < hi:
            raise ValueError(f"filter.window {list(self.window)}: need 0 <= lo < hi")
        if self.depth < hi or (self.top_k is not None and self.depth <= self.top_k):
            raise ValueError(f"filter.depth {self.depth} must cover window hi {hi} and top_k {self.top_k}")
        return self


class DataConfig(_Strict):
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    total_rows: Int | None = Field(None, ge=1, le=MAX_ROWS, description="rows in the mix; None = every available row")
    hard_negatives: Int = Field(0, ge=0, le=1024, description="hard negatives per row (KaLM: 7); mined when `filter` is set")
    filter: FilterConfig | None = Field(None, description="ranking-consistency filter + hard-negative mining")
    seed: Int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _resolve_kinds(self) -> DataConfig:
        allowed = SourceKind.__args__  # type: ignore[attr-defined]
        for name, source in self.sources.items():
            # a source name is a dotted-path segment (ablate axes) and a label in cards and files
            problem = name_problem(name, max_length=64)
            if problem:
                raise ValueError(f"source name {problem}")
            if "." in name:
                raise ValueError(f"source name {name!r} contains a dot; a source name is one segment of "
                                 "dotted ablate paths (data.sources.<name>.weight)")
            if source.kind is None:
                if name not in allowed:
                    raise ValueError(
                        f"source {name!r} needs a 'kind' (one of {', '.join(allowed)}) "
                        "because its name is not a builder name"
                    )
                source.kind = name  # type: ignore[assignment]
            if source.kind in PATH_KINDS and not source.path:
                raise ValueError(f"source {name!r} of kind {source.kind} needs a 'path'")
            if source.kind == "synth" and source.synth is None:
                raise ValueError(f"source {name!r} of kind synth needs a 'synth' section")
            if source.kind == "hf-dataset" and not source.dataset:
                raise ValueError(f"source {name!r} of kind hf-dataset needs a 'dataset' (Hub id or folder)")
        if self.sources and not any(s.weight > 0 for s in self.sources.values()):
            raise ValueError("every source has weight 0: the mix would be empty")
        return self


class LoraConfig(_Strict):
    r: Int = Field(8, ge=1, le=4096)
    alpha: Int = Field(16, ge=1, le=65536)
    dropout: Float = Field(0.0, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class MatryoshkaConfig(_Strict):
    """Nested embedding sizes trained jointly (KaLM: 896/512/256/128/64, weights 1/.3/.2/.1/.1)."""

    dims: list[Annotated[Int, Field(ge=1, le=MAX_BATCH)]] = Field(min_length=1, max_length=64)
    weights: list[Annotated[Float, Field(ge=0, le=1e6)]] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> MatryoshkaConfig:
        if self.weights is not None and len(self.weights) != len(self.dims):
            raise ValueError(f"matryoshka.weights has {len(self.weights)} values for {len(self.dims)} dims")
        if any(d < 1 for d in self.dims):
            raise ValueError("matryoshka.dims must be positive")
        repeated = sorted({d for d in self.dims if self.dims.count(d) > 1})
        if repeated:  # each size is one loss term (and one logged `loss/mrl_<d>`): a repeat only doubles its weight
            raise ValueError(f"matryoshka.dims repeats {repeated}: give each size once (weight it with matryoshka.weights)")
        return self


class HardNegativeMixingConfig(_Strict):
    """Online hard-negative mixing (KaLM-Embedding-V2, arXiv 2506.20923; after MoCHi, arXiv 2010.01028):
    per query, synthetic negatives normalise(λ·n_j + (1-λ)·n_k) of two of its own hardest negatives,
    added to that query's logits only. harness.train.loss says which details are the paper's."""

    synthetic: Int = Field(2, ge=0, le=1024, description="synthetic negatives per query (0 = off, the plain loss)")
    hardest: Int | None = Field(None, ge=2, le=1024, description="mix among the row's `hardest` hard negatives by "
                                "current similarity (at most as many as it has); null = all of them")
    beta: tuple[Float, Float] = Field((2.0, 2.0), description="Beta(a, b) shape of λ (KaLM-V2: Beta(2, 2))")
    coefficient: tuple[Float, Float] = Field((0.0, 1.0), description="λ range [lo, hi] in [0, 1]: "
                                             "λ = lo + (hi - lo) * Beta(a, b)")
    detach: bool = Field(True, description="no gradient into the mixed embeddings (MoCHi's synthetic points)")

    @model_validator(mode="after")
    def _ranges(self) -> HardNegativeMixingConfig:
        lo, hi = self.coefficient
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"hard_negative_mixing.coefficient {list(self.coefficient)}: need 0 <= lo <= hi <= 1")
        if min(self.beta) <= 0:
            raise ValueError(f"hard_negative_mixing.beta {list(self.beta)}: both shape parameters must be > 0")
        return self


class TrainConfig(_Strict):
    steps: Int | None = Field(None, ge=1, le=100_000_000, description="optimizer steps; None = `epochs` over the data")
    epochs: Float = Field(1.0, gt=0, le=10_000)
    batch_size: Int = Field(32, ge=2, le=MAX_BATCH, description="per-device batch (KaLM: 48); global = x nproc")
    lr: Float = Field(2e-5, gt=0, le=10)
    weight_decay: Float = Field(0.01, ge=0, le=10)
    warmup_ratio: Float = Field(0.1, ge=0, le=1)
    temperature: Float = Field(0.05, gt=0, le=100, description="InfoNCE temperature (KaLM: 0.01)")
    grad_clip: Float | None = Field(1.0, gt=0, le=1e6)
    gradient_accumulation: Int = Field(1, ge=1, le=MAX_BATCH, description="micro-batches per optimizer step")
    homogeneous_ratio: Float = Field(
        0.0, ge=0, le=1, description="semi-homogeneous task batches: share of a batch from one task")
    matryoshka: MatryoshkaConfig | None = None
    focal_gamma: Float = Field(0.0, ge=0, le=100, description="focal-style re-weighting (KaLM-Embedding-V2): each row's "
                               "InfoNCE term times (1 - p_pos)^gamma; 0 = off")
    hard_negative_mixing: HardNegativeMixingConfig | None = Field(
        None, description="online hard-negative mixing (KaLM-Embedding-V2); null = off")
    lora: LoraConfig | None = None
    bf16: BF16 = Field("auto", description=BF16_HELP)
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)
    export_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of the saved weights (training always keeps float32 master weights)")
    gradient_checkpointing: bool = False
    grad_cache: bool = Field(False, description="GradCache: large contrastive batches in small memory")
    grad_cache_chunk: Int = Field(16, ge=1, le=MAX_BATCH, description="texts per forward pass under grad_cache")
    nproc: Int = Field(1, ge=1, le=4096, description="processes (GPUs) per variant; >1 launches torchrun")
    checkpoint_every: Int | None = Field(None, ge=1, le=100_000_000, description="save a resumable checkpoint every N steps")
    seed: Int = Field(0, ge=0, le=MAX_SEED)
    log_every: Int = Field(10, ge=1, le=100_000_000)
    # Trackers change no weight: left out of the train stage key, and out of dumps (hashes) when empty.
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        default_factory=list, exclude_if=lambda v: not v,
        description="experiment trackers fed every log_every steps (harness/train/trackers.py); [] = local log only")


LANGUAGE_PATTERN = r"^[a-z]{3}(-[A-Z][a-z]{3})?$"  # mteb's language codes: ISO 639-3 [+ ISO 15924 script]


class EvalConfig(_Strict):
    tasks: list[str] = Field(default_factory=lambda: ["HarnessCodeRetrieval", "HarnessCLDRBitextMining"],
                             description="harness task names or mteb task names")
    benchmarks: list[str] = Field(default_factory=list,
                                  description='mteb benchmark names, e.g. "MTEB(Africa, v1, lite)" / AfriMTEB-Lite')
    languages: list[Annotated[str, Field(pattern=LANGUAGE_PATTERN)]] | None = Field(
        None, min_length=1,
        description="keep only the subsets of multilingual tasks that include one of these languages (ISO 639-3, "
                    "optionally with script: amh, hau, yor-Latn); monolingual tasks are kept whole; a benchmark's "
                    "multilingual task with none of them is skipped, a named one is an error. None = all")
    batch_size: Int = Field(64, ge=1, le=MAX_BATCH)
    bf16: BF16 = Field("auto", description=BF16_HELP)
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)

    @model_validator(mode="after")
    def _non_empty(self) -> EvalConfig:
        if not self.tasks and not self.benchmarks:
            raise ValueError("eval names no tasks and no benchmarks: name at least one")
        return self


class VariantConfig(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _mixing_has_pairs(self) -> VariantConfig:
        mixing = self.train.hard_negative_mixing
        if mixing is not None and mixing.synthetic > 0 and self.data.hard_negatives < 2:
            raise ValueError(f"train.hard_negative_mixing mixes pairs of a row's own hard negatives: it needs "
                             f"data.hard_negatives >= 2 (got {self.data.hard_negatives})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
