"""The mteb side of the embedder: an `AbsEncoder` with a unique `ModelMeta` per trained run.

Every run gets its own model name and `revision = train-stage hash`, so mteb's result cache
can never hand one variant's scores to another (mteb2.md, pitfall 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta
from mteb.types import PromptType

from harness.evaluate.tasks import task_instruction
from harness.instructions import RETRIEVAL
from harness.model import Embedder, format_query, instruction_budget_warning, query_tokens_left

MEMO_BYTES = 512 * 2**20  # vectors kept for texts that recur across subsets and sides of an evaluation
QUERY_SIDE_TYPES = {"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"}
ALL_INPUT_TYPES = {"Classification", "MultilabelClassification", "Clustering"}


def kalm_instruction(task_metadata: Any, prompt_type: PromptType | None) -> str | None:
    """KaLM's scheme: retrieval-like tasks instruct the query side only; classification and
    clustering instruct every input with the task description; symmetric tasks get none."""
    own = task_instruction(task_metadata.name)
    if task_metadata.type in QUERY_SIDE_TYPES:
        if prompt_type != PromptType.query:
            return None
        return own or RETRIEVAL
    if task_metadata.type in ALL_INPUT_TYPES:
        return own or task_metadata.description
    return own if prompt_type == PromptType.query else None


class HarnessEncoder(AbsEncoder):
    def __init__(self, embedder: Embedder, *, name: str, revision: str, batch_size: int = 64,
                 show_progress: bool = True, bf16: bool = False, log: Callable[[str], None] = print,
                 replicas: Sequence[Embedder] = ()) -> None:
        self.model = embedder
        self.replicas = list(replicas)
        self.batch_size = batch_size
        self.bf16 = bf16
        self.show_progress = show_progress
        self.log = log
        self._budget_checked: set[tuple[str, str]] = set()
        self._memo: dict[tuple[str, int], np.ndarray] = {}
        self._memo_bytes = 0
        cfg = embedder.config
        self.mteb_model_meta = ModelMeta(
            loader=None, name=name, revision=revision, release_date=None, languages=None,
            n_parameters=sum(p.numel() for p in embedder.parameters()), memory_usage_mb=None,
            max_tokens=cfg.passage_max_length, embed_dim=embedder.dim, license=None, open_weights=True,
            public_training_code=None, public_training_data=None, framework=["PyTorch"],
            similarity_fn_name="cosine", use_instructions=cfg.instructions, training_datasets=None,
        )

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        cfg = self.model.config
        instruction = kalm_instruction(task_metadata, prompt_type) if cfg.instructions else None
        max_length = cfg.query_max_length if prompt_type == PromptType.query else cfg.passage_max_length
        if instruction:
            self._check_budget(task_metadata.name, instruction, max_length)
            texts = [format_query(t, instruction, cfg.instruction_template) for t in texts]
        side = prompt_type.value if prompt_type else "text"
        return self._encode_once(texts, max_length, f"{task_metadata.name}/{hf_subset}/{side}")

    def _encode_once(self, texts: list[str], max_length: int, desc: str) -> np.ndarray:
        """Encode each distinct (text, max_length) once per encoder: mteb calls `encode` per subset and
        side, and subsets often share one side (every CLDR language pair has the same English names;
        multilingual retrieval tasks share corpora). Vectors are kept up to MEMO_BYTES."""
        keys = [(t, max_length) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._memo]
        fresh: dict[tuple[str, int], np.ndarray] = {}
        if missing:
            vectors = self.model.encode([t for t, _ in missing], max_length=max_length, batch_size=self.batch_size,
                                        show_progress=self.show_progress, bf16=self.bf16, replicas=self.replicas,
                                        desc=desc)
            fresh = dict(zip(missing, vectors, strict=True))
            for key, vector in fresh.items():
                if self._memo_bytes + vector.nbytes > MEMO_BYTES:
                    break
                self._memo[key] = vector
                self._memo_bytes += vector.nbytes
        if not keys:
            return np.zeros((0, self.model.dim), dtype=np.float32)
        return np.stack([fresh[k] if k in fresh else self._memo[k] for k in keys])

    def _check_budget(self, task: str, instruction: str, max_length: int) -> None:
        """Warn once per (task, instruction) when the instruction leaves almost no room for the text."""
        if (task, instruction) in self._budget_checked:
            return
        self._budget_checked.add((task, instruction))
        left = query_tokens_left(self.model.tokenizer, self.model.config.instruction_template, instruction, max_length)
        warning = instruction_budget_warning(left, instruction, max_length, f"warning: eval task {task}")
        if warning:
            self.log(f"  {warning}")


def build_encoder(embedder: Embedder, eval_config: Any, *, name: str, revision: str, show_progress: bool = True,
                  log: Callable[[str], None] = print) -> HarnessEncoder:
    """The encoder an eval job runs: on `eval.device` (every visible GPU when `auto` finds several:
    one replica each), in the precision `eval.bf16` resolves to there; says both in the log."""
    from harness.devices import encode_devices, resolve_compute

    devices = encode_devices(eval_config.device)
    compute = resolve_compute(devices[0], eval_config.bf16)  # the replicas' GPUs are the first one's kind
    precision = compute.precision
    where = compute.describe() + (f"; data-parallel on {len(devices)} GPUs" if len(devices) > 1 else "")
    log(f"  eval   {where}")
    embedder = embedder.to(devices[0])
    return HarnessEncoder(embedder, name=name, revision=revision, batch_size=eval_config.batch_size,
                          show_progress=show_progress, bf16=precision.bf16, log=log,
                          replicas=embedder.replicate(devices[1:]))
