"""The embedder: backbone + pooling + normalisation + query-side instructions.

Training and evaluation share this one module, so the vectors mteb scores are exactly the
vectors the loss saw. `save()` writes a sentence-transformers folder built from
sentence-transformers' own modules, so `SentenceTransformer(path)` reproduces our embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.backbones import Backbone, load_backbone
from harness.config import ModelConfig

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

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
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
    ) -> np.ndarray:
        """Inference: length-sorted batches (less padding), original order restored."""
        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        batches = _chunks(order, batch_size)
        for idx in tqdm(batches, desc=desc, disable=not show_progress, leave=False):
            emb = self(self.tokenize([texts[i] for i in idx], max_length))
            out[idx] = emb.float().cpu().numpy()
        self.train(was_training)
        return out

    def save(self, path: str | Path) -> None:
        """Write a Hugging Face + sentence-transformers folder (ST's own module classes)."""
        from sentence_transformers import SentenceTransformer, models

        path = Path(path)
        self.backbone.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        transformer = models.Transformer(
            str(path), max_seq_length=self.config.passage_max_length,
            tokenizer_args={"padding_side": self.tokenizer.padding_side},
        )
        pooling_mode = {"mean": "mean", "last_token": "lasttoken", "cls": "cls"}[self.config.pooling]
        modules: list[torch.nn.Module] = [transformer, models.Pooling(self.dim, pooling_mode=pooling_mode)]
        if self.config.normalize:
            modules.append(models.Normalize())
        SentenceTransformer(modules=modules, device="cpu").save(str(path))


def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i : i + size] for i in range(0, len(order), size)]
