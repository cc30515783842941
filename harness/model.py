"""The embedder: backbone + pooling + normalisation + query-side instructions.

Training and evaluation share this one module, so the vectors mteb scores are exactly the
vectors the loss saw. `save()` writes a sentence-transformers folder built from
sentence-transformers' own modules, so `SentenceTransformer(path)` reproduces our embeddings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness import atomic
from harness.backbones import Backbone, load_backbone
from harness.config import ModelConfig
from harness.instructions import RETRIEVAL

EMBEDDER_FILE = "harness_embedder.json"

def format_query(text: str, instruction: str | None, template: str) -> str:
    """KaLM's query side: `Instruct: {task} \\n Query: {text}`; documents never get one."""
    if not instruction:
        return text
    return template.format(instruction=instruction) + text


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

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )

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

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        *,
        max_length: int,
        batch_size: int = 64,
        show_progress: bool = False,
        desc: str = "encode",
        bf16: bool = False,
    ) -> np.ndarray:
        """Inference: every text tokenised once, batched by token length (least padding),
        original order restored; optional bf16 autocast (about twice as fast on CPUs with bf16)."""
        was_training = self.training
        self.eval()
        encoded = self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        device = "cuda" if next(self.parameters()).is_cuda else "cpu"
        autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        for idx in tqdm(_chunks(order, batch_size), desc=desc, disable=not show_progress, leave=False):
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx], "attention_mask": [masks[i] for i in idx]},
                                       return_tensors="pt")
            with autocast:
                emb = self(batch)
            out[idx] = emb.float().cpu().numpy()
        self.train(was_training)
        return out

    def save(self, path: str | Path, matryoshka_dims: list[int] | None = None) -> None:
        """Write a Hugging Face + sentence-transformers folder (ST's own module classes).

        The folder also records the harness's embedder settings (`harness_embedder.json`) and
        KaLM's retrieval query prompt under the name "query". Bidirectional decoders are the one
        case sentence-transformers cannot reproduce without custom code: it would run them causally.
        """
        from sentence_transformers import SentenceTransformer

        try:  # sentence-transformers >= 6 moved the module classes
            from sentence_transformers.sentence_transformer import modules as models
        except ImportError:  # pragma: no cover - older releases
            from sentence_transformers import models  # type: ignore[no-redef]

        path = Path(path)
        self.backbone.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        # The tokenizer's padding side travels in its tokenizer_config.json.
        transformer = models.Transformer(str(path), max_seq_length=self.config.passage_max_length)
        pooling_mode = {"mean": "mean", "last_token": "lasttoken", "cls": "cls"}[self.config.pooling]
        modules: list[torch.nn.Module] = [transformer, models.Pooling(self.dim, pooling_mode=pooling_mode)]
        if self.config.normalize:
            modules.append(models.Normalize())
        query_prompt = self.config.instruction_template.format(instruction=RETRIEVAL)
        prompts = {"query": query_prompt, "document": ""} if self.config.instructions else {}
        SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(path))
        atomic.write_json(path / EMBEDDER_FILE, {
            **self.config.model_dump(mode="json"),
            "base_backbone": self.config.backbone,
            "matryoshka_dims": matryoshka_dims,
            "sentence_transformers_exact": not self.bidirectional,
        })


def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i : i + size] for i in range(0, len(order), size)]
