"""InfoNCE over in-batch and hard negatives (KaLM: τ = 0.01, 1 positive + 7 negatives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, passages: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of each query against every passage in the batch.

    `passages` holds every row's positive and hard negatives; `targets[i]` is the index of
    query i's positive in it, so all other rows' passages act as in-batch negatives.
    """
    logits = queries @ passages.T / temperature
    return F.cross_entropy(logits, targets)
