"""InfoNCE over in-batch and hard negatives (KaLM: τ = 0.01, 1 positive + 7 negatives),
optionally summed over Matryoshka prefixes (each truncated vector re-normalised)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, passages: torch.Tensor, targets: torch.Tensor, temperature: float,
             passage_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each query against every passage in the (possibly gathered) batch.

    `passages` holds every row's positive and hard negatives; `targets[i]` is the index of
    query i's positive, so all other passages act as negatives. `passage_mask` (bool, False =
    padding) hides the filler that equal-size gathering across ranks adds.
    """
    logits = queries @ passages.T / temperature
    if passage_mask is not None:
        logits = logits.masked_fill(~passage_mask.unsqueeze(0), torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, targets)


def matryoshka_info_nce(queries: torch.Tensor, passages: torch.Tensor, targets: torch.Tensor, temperature: float,
                        dims: Sequence[int] | None = None, weights: Sequence[float] | None = None,
                        passage_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_d w_d · InfoNCE on the first d dimensions, re-normalised (plain InfoNCE without dims)."""
    if not dims:
        return info_nce(queries, passages, targets, temperature, passage_mask)
    weights = weights or [1.0] * len(dims)
    total = queries.new_zeros(())
    for dim, weight in zip(dims, weights, strict=True):
        q = F.normalize(queries[:, :dim], dim=-1)
        p = F.normalize(passages[:, :dim], dim=-1)
        total = total + weight * info_nce(q, p, targets, temperature, passage_mask)
    return total
