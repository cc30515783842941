"""The embedder: backbone + pooling + normalisation + query-side instructions.

Training and evaluation share this one module, so the vectors mteb scores are exactly the
vectors the loss saw. `save()` writes a sentence-transformers folder (harness.st_folder), so
`SentenceTransformer(path)` reproduces our embeddings.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness import atomic
from harness.backbones import Backbone, load_backbone
from harness.config import ModelConfig
from harness.devices import autocast
from harness.instructions import RETRIEVAL

EMBEDDER_FILE = "harness_embedder.json"

def format_query(text: str, instruction: str | None, template: str) -> str:
    """KaLM's query side: `Instruct: {task} \\n Query: {text}`; documents never get one."""
    if not instruction:
        return text
    return template.format(instruction=instruction) + text


MIN_QUERY_TOKENS = 8  # fewer tokens of query text than this left after the instruction: warn


def query_tokens_left(tokenizer: Any, template: str, instruction: str, max_length: int) -> int:
    """Tokens of query text that fit in `max_length` after the instruction prefix and special tokens."""
    prefix = len(tokenizer(template.format(instruction=instruction), add_special_tokens=False)["input_ids"])
    specials = len(tokenizer("", add_special_tokens=True)["input_ids"])
    return max_length - prefix - specials


def instruction_budget_warning(tokens_left: int, instruction: str, max_length: int, where: str) -> str | None:
    if tokens_left >= MIN_QUERY_TOKENS:
        return None
    return (f"{where}: the instruction template leaves {max(tokens_left, 0)} of {max_length} query tokens for the "
            f"query text (instruction {instruction[:60]!r}...); raise model.query_max_length or shorten the "
            "instruction")


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str, padding_side: str) -> torch.Tensor:
    """Pool token states to one vector per text; correct for left and for right padding."""
    if how == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    if how == "last_token":
        if padding_side == "left":
            return hidden[:, -1]
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    if how == "cls":
        if padding_side == "left":
            first = (mask.size(1) - mask.sum(1)).clamp(max=mask.size(1) - 1)
            return hidden[torch.arange(hidden.size(0), device=hidden.device), first]
        return hidden[:, 0]
    raise ValueError(f"unknown pooling {how!r}")


class Embedder(torch.nn.Module):
    def __init__(self, backbone: Backbone, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = backbone.model
        self.tokenizer = backbone.tokenizer
        self.kind = backbone.kind
        self.source = backbone.source
        self.config = config
        self.bidirectional = self.kind == "decoder" and config.attention == "bidirectional"
        # An embedder never generates: no KV cache (it costs memory and time on every forward).
        if hasattr(self.backbone.config, "use_cache"):
            self.backbone.config.use_cache = False
        if self.bidirectional:
            # KaLM v2: drop the causal mask. Attention modules fall back to their `is_causal`
            # flag when no mask is passed (sdpa), so clear it too; forward() passes a padding-only mask.
            for module in self.backbone.modules():
                if hasattr(module, "is_causal"):
                    module.is_causal = False

    @classmethod
    def from_config(cls, config: ModelConfig, checkpoint: str | Path | None = None) -> Embedder:
        """The base backbone of `config`, or a trained checkpoint folder saved by `save()`."""
        spec = str(checkpoint) if checkpoint is not None else config.backbone
        return cls(load_backbone(spec, trust_remote_code=config.trust_remote_code), config)

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Where the weights live; every batch is moved here before the forward pass."""
        return next(self.parameters()).device

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        """Tokenised, padded batch on the model's device."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt")
        return self.to_device(batch)

    def to_device(self, batch: Any) -> dict[str, torch.Tensor]:
        device = self.device
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def _attention_mask(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | dict[str, object]:
        if not self.bidirectional:
            return mask
        from transformers.masking_utils import create_bidirectional_mask

        config = self.backbone.config
        with torch.no_grad():  # only its shape, dtype and device matter to the mask
            embeds = self.backbone.get_input_embeddings()(input_ids[:, :1]).expand(-1, input_ids.size(1), -1)
        full = create_bidirectional_mask(config=config, inputs_embeds=embeds, attention_mask=mask)
        return {kind: full for kind in set(getattr(config, "layer_types", None) or ["full_attention"])}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = self._attention_mask(batch["input_ids"], batch["attention_mask"])
        out = self.backbone(input_ids=batch["input_ids"], attention_mask=mask)
        emb = pool(out.last_hidden_state, batch["attention_mask"], self.config.pooling, self.tokenizer.padding_side)
        return F.normalize(emb, dim=-1) if self.config.normalize else emb

    def embed(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """Differentiable embeddings of one batch (training)."""
        return self(self.tokenize(texts, max_length))

    def encode(
        self,
        texts: Sequence[str],
        *,
        max_length: int,
        batch_size: int = 64,
        show_progress: bool = False,
        desc: str = "encode",
        bf16: bool = False,
        replicas: Sequence[Embedder] = (),
    ) -> np.ndarray:
        """Inference on the model's device: every text tokenised once, batched by token length
        (least padding), original order restored; bf16 autocast when `bf16` (resolve it with
        harness.devices.resolve_compute: it only pays where the device runs bf16 natively).

        `replicas` (copies of this model on other GPUs, see `replicate`) make it data-parallel: the
        length-sorted batches are dealt round-robin to one thread per device (CUDA kernels release
        the GIL, so the devices run side by side). Without replicas nothing changes.
        """
        models = [self, *replicas]
        was_training = [m.training for m in models]
        for m in models:
            m.eval()
        encoded = self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        chunks = _chunks(order, batch_size)
        with tqdm(total=len(chunks), desc=desc, disable=not show_progress, leave=False) as bar:
            if len(models) == 1:
                self._encode_chunks(chunks, ids, masks, out, bf16, bar)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=len(models)) as pool:
                    work = [pool.submit(m._encode_chunks, chunks[i :: len(models)], ids, masks, out, bf16, bar)
                            for i, m in enumerate(models)]
                    for future in work:
                        future.result()
        for m, mode in zip(models, was_training, strict=True):
            m.train(mode)
        return out

    @torch.inference_mode()
    def _encode_chunks(self, chunks: list[np.ndarray], ids: list[list[int]], masks: list[list[int]],
                       out: np.ndarray, bf16: bool, bar: Any) -> None:
        """Encode `chunks` (index arrays into ids/masks) on this model's device into `out` rows."""
        for idx in chunks:
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx], "attention_mask": [masks[i] for i in idx]},
                                       return_tensors="pt")
            with autocast(self.device, bf16):  # autocast state is per thread: entered here
                emb = self(self.to_device(batch))
            out[idx] = emb.float().cpu().numpy()
            bar.update(1)

    def replicate(self, devices: Sequence[torch.device]) -> list[Embedder]:
        """Copies of this embedder on `devices` (for data-parallel `encode`)."""
        return [copy.deepcopy(self).to(device) for device in devices]

    def save(self, path: str | Path, matryoshka_dims: list[int] | None = None, dtype: str = "float32") -> None:
        """Write a Hugging Face + sentence-transformers folder (harness.st_folder's module files).

        The folder also records the harness's embedder settings (`harness_embedder.json`) and
        KaLM's retrieval query prompt under the name "query". Bidirectional decoders are the one
        case sentence-transformers cannot reproduce without custom code: it would run them causally.

        The tokenizer is saved without its chat template: sentence-transformers >= 6 infers a
        "message" modality from one and wraps every input in it (Qwen's "<|im_start|>system…"),
        which is not how the harness embeds. Its padding side travels in its tokenizer_config.json.
        `dtype` is the stored weights' dtype (float32 keeps the trained weights exactly; bfloat16
        halves the folder).
        """
        from harness.st_folder import write_sentence_transformers_modules

        path = Path(path)
        stored = getattr(torch, dtype)
        backbone = self.backbone if stored == torch.float32 else copy.deepcopy(self.backbone).to(stored)
        backbone.save_pretrained(path)
        tokenizer = copy.copy(self.tokenizer)
        tokenizer.chat_template = None
        tokenizer.save_pretrained(path)
        for leftover in ("chat_template.jinja", "chat_template.json"):
            (path / leftover).unlink(missing_ok=True)
        query_prompt = self.config.instruction_template.format(instruction=RETRIEVAL)
        write_sentence_transformers_modules(
            path, dim=self.dim, pooling=self.config.pooling, normalize=self.config.normalize,
            max_seq_length=self.config.passage_max_length,
            prompts={"query": query_prompt, "document": ""} if self.config.instructions else {})
        atomic.write_json(path / EMBEDDER_FILE, {
            **self.config.model_dump(mode="json"),
            "base_backbone": self.config.backbone,
            "matryoshka_dims": matryoshka_dims,
            "stored_dtype": dtype,
            "sentence_transformers_exact": not self.bidirectional,
        })


def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i : i + size] for i in range(0, len(order), size)]
