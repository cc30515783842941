"""InfoNCE over in-batch and hard negatives (KaLM: τ = 0.01, 1 positive + 7 negatives),
optionally summed over Matryoshka prefixes (each truncated vector re-normalised), with two
KaLM-Embedding-V2 options (Zhao et al. 2025, arXiv 2506.20923, fine-tuning objective):

- focal-style re-weighting: row i's InfoNCE term -log p_i is multiplied by (1 - p_i)^γ, p_i the
  softmax probability of its positive; the loss is the mean over rows, E_i[-(1 - p_i)^γ log p_i],
  the paper's normalisation (γ = 0 is plain InfoNCE). The weight is part of the graph, as in focal
  loss (Lin et al. 2017): the paper's formula has no stop-gradient, so neither has ours. Under
  Matryoshka each prefix's term is re-weighted by that prefix's own p_i. Across ranks every rank
  averages its own rows and gradients are averaged: the mean over the global batch (equal per-rank
  batches, as the sampler makes them), with no extra reduction.
- online hard-negative mixing, the paper's pair-wise variant (after MoCHi, Kalantidis et al. 2020):
  for each query, synthetic negatives h = normalise(λ·n_j + (1 - λ)·n_k) mixed from two distinct
  negatives j, k among that row's own `hardest` hard negatives (ranked by the current similarity to
  the query), λ ~ Beta(2, 2) as in the paper; h is unit length, like every embedding under
  `model.normalize`. They enter only that row's logits (its denominator Z_i), never another row's.
  Not published, so chosen here and made keys of `train.hard_negative_mixing`: how many synthetic
  negatives per query, the pool of hardest negatives they are drawn from, and whether gradients
  flow into the mixed embeddings (default no: MoCHi's synthetic points carry no gradient, and the
  real negatives already get theirs from the plain logits). The Beta shape and a coefficient range
  λ ∈ [lo, hi] (λ = lo + (hi - lo)·Beta) are keys too, defaulting to the paper's Beta(2, 2) on
  [0, 1]. The paper's list-wise variant (a similarity-weighted mix of all of a row's negatives) is
  not implemented. Under Matryoshka every prefix mixes its own re-normalised negatives with the
  same random numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MixingDraw:
    """One step's random numbers for hard-negative mixing, [rows, synthetic] each.

    Drawn once per micro-step (not per Matryoshka prefix), on the host, from the step's seed.
    `first` and `second` are uniforms in [0, 1) that pick the two mixed negatives; `weight` is λ.
    """

    first: torch.Tensor
    second: torch.Tensor
    weight: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.weight.shape[1])

    def to(self, device: torch.device) -> MixingDraw:
        return MixingDraw(self.first.to(device), self.second.to(device), self.weight.to(device))


@dataclass(frozen=True)
class Mixing:
    """Everything the loss needs to add a row's synthetic negatives to its logits.

    `negatives[i]` lists the indices (into the passages the loss sees) of row i's own hard
    negatives, -1 padded; `hardest` limits the pool to that many of them (None = all).
    """

    negatives: torch.Tensor  # long [rows, max negatives]
    draw: MixingDraw
    hardest: int | None = None
    detach: bool = True


def draw_mixing(seed: int, step: int, rows: int, count: int, beta: tuple[float, float] = (2.0, 2.0),
                coefficient: tuple[float, float] = (0.0, 1.0), first_row: int = 0,
                global_rows: int | None = None) -> MixingDraw:
    """The random numbers of micro-step `step` for rows [first_row, first_row + rows) of a global batch.

    The whole global batch is drawn from one generator keyed by (seed, step) and this rank keeps its
    slice, so a row gets the same numbers whether the batch runs on one process or is split across
    ranks (the DDP test relies on it), and a resumed run draws what an uninterrupted one did.
    """
    total = max(global_rows or 0, first_row + rows)
    rng = np.random.default_rng([seed, step, 0x6D6978])  # 'mix': a stream of its own
    first = rng.random((total, count))
    second = rng.random((total, count))
    lo, hi = coefficient
    weight = lo + (hi - lo) * rng.beta(beta[0], beta[1], size=(total, count))
    part = slice(first_row, first_row + rows)

    def host(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[part], dtype=np.float32))

    return MixingDraw(host(first), host(second), host(weight))


def own_negatives(targets: Sequence[int], n_passages: int, offset: int = 0) -> torch.Tensor:
    """Row i's hard negatives are the passages after its positive up to the next row's positive
    (the layout the loop builds: positive, then that row's negatives). Host tensor, -1 padded;
    indices shifted by `offset` (this rank's first row in the gathered passages)."""
    bounds = [*targets, n_passages]
    spans = [list(range(bounds[i] + 1, bounds[i + 1])) for i in range(len(targets))]
    width = max((len(s) for s in spans), default=0)
    out = torch.full((len(targets), width), -1, dtype=torch.long)
    for i, span in enumerate(spans):
        if span:
            out[i, : len(span)] = torch.tensor(span, dtype=torch.long) + offset
    return out


def synthetic_negatives(queries: torch.Tensor, negatives: torch.Tensor, present: torch.Tensor,
                        mixing: Mixing) -> tuple[torch.Tensor, torch.Tensor]:
    """(synthetic [rows, count, dim] L2-normalised, valid [rows, count]) from each row's own negatives.

    `negatives` [rows, M, dim] holds the rows' hard-negative embeddings (`present` marks the real
    ones). A row with fewer than two negatives in its pool gets no synthetic ones (valid False).
    """
    rows, count = mixing.draw.weight.shape
    with torch.no_grad():
        sims = torch.einsum("rd,rmd->rm", queries, negatives).masked_fill(~present, float("-inf"))
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices  # hardest first
        pool = present.sum(1)
        if mixing.hardest is not None:
            pool = pool.clamp_max(mixing.hardest)
        valid = (pool >= 2).unsqueeze(1).expand(rows, count)
        size = pool.clamp_min(2).unsqueeze(1).to(mixing.draw.first.dtype)
        j = (mixing.draw.first * size).long().clamp_max(size.long() - 1)
        k = (mixing.draw.second * (size - 1)).long().clamp_max(size.long() - 2)
        k = k + (k >= j).long()  # a second, distinct negative
        a, b = order.gather(1, j), order.gather(1, k)
    pick = torch.arange(rows, device=negatives.device).unsqueeze(1)
    lam = mixing.draw.weight.to(negatives.dtype).unsqueeze(-1)
    mixed = F.normalize(lam * negatives[pick, a] + (1 - lam) * negatives[pick, b], dim=-1)
    if mixing.detach:
        mixed = mixed.detach()
    return mixed, valid


def _row_negatives(passages: torch.Tensor, mixing: Mixing) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's own hard-negative embeddings [rows, M, dim] (padding slots hold passage 0) and
    which slots are real."""
    return passages[mixing.negatives.clamp_min(0)], mixing.negatives >= 0


def focal_weights(per_row: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - p)^γ with p = exp(-loss) the positive's probability; 1 - p as -expm1(-loss) keeps its
    precision for easy rows, and a floor keeps the gradient finite where p rounds to 1."""
    one_minus_p = (-torch.expm1(-per_row)).clamp_min(torch.finfo(per_row.dtype).tiny)
    return one_minus_p.pow(gamma)


@dataclass(frozen=True)
class LossTerms:
    """A loss value and the parts it is made of, for the log (detached: they carry no graph).

    `parts` keys, present only where the config has them (plain InfoNCE has none):
    - `mrl_<d>`: the InfoNCE term of the first d dimensions, weight-free (the total is
      Σ_d w_d · mrl_d), in its focal form when focal re-weighting is on;
    - `infonce` and `focal` (focal re-weighting only): the plain InfoNCE, mean -log p_i over rows,
      that γ = 0 would give, and the focal value, the mean of (1 - p_i)^γ · -log p_i, which is the
      total; under Matryoshka both are the w_d-weighted sums over prefixes.
    The parts are values the loss computes anyway: no extra forward pass, and the total is the
    same tensor, with the same graph, that `matryoshka_info_nce` returns.
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


def info_nce(queries: torch.Tensor, passages: torch.Tensor, targets: torch.Tensor, temperature: float,
             passage_mask: torch.Tensor | None = None, *, focal_gamma: float = 0.0,
             mixing: Mixing | None = None, row_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each query against every passage in the batch (`_info_nce`'s loss)."""
    return _info_nce(queries, passages, targets, temperature, passage_mask, focal_gamma=focal_gamma,
                     mixing=mixing, row_negatives=row_negatives)[0]


def _info_nce(queries: torch.Tensor, passages: torch.Tensor, targets: torch.Tensor, temperature: float,
              passage_mask: torch.Tensor | None = None, *, focal_gamma: float = 0.0,
              mixing: Mixing | None = None,
              row_negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(loss, plain InfoNCE detached when focal re-weighting is on, else None). Cross-entropy of each query against every passage in the (possibly gathered) batch.

    `passages` holds every row's positive and hard negatives; `targets[i]` is the index of
    query i's positive, so all other passages act as negatives. `passage_mask` (bool, False =
    padding) hides the filler that equal-size gathering across ranks adds. `mixing` appends each
    row's synthetic negatives to that row's logits (`row_negatives`: their source embeddings, when
    the caller has them already); `focal_gamma` re-weights rows (module docstring).
    """
    logits = queries @ passages.T / temperature
    if passage_mask is not None:
        logits = logits.masked_fill(~passage_mask.unsqueeze(0), torch.finfo(logits.dtype).min)
    if mixing is not None and mixing.draw.count > 0 and mixing.negatives.shape[1] > 0:
        negatives, present = _row_negatives(passages, mixing) if row_negatives is None else \
            (row_negatives, mixing.negatives >= 0)
        synthetic, valid = synthetic_negatives(queries, negatives, present, mixing)
        extra = torch.einsum("rd,rsd->rs", queries, synthetic) / temperature
        logits = torch.cat([logits, extra.masked_fill(~valid, torch.finfo(logits.dtype).min)], dim=1)
    if not focal_gamma:
        return F.cross_entropy(logits, targets), None
    per_row = F.cross_entropy(logits, targets, reduction="none")
    return (focal_weights(per_row, focal_gamma) * per_row).mean(), per_row.detach().mean()


def matryoshka_info_nce(queries: torch.Tensor, passages: torch.Tensor, targets: torch.Tensor, temperature: float,
                        dims: Sequence[int] | None = None, weights: Sequence[float] | None = None,
                        passage_mask: torch.Tensor | None = None, *, focal_gamma: float = 0.0,
                        mixing: Mixing | None = None) -> torch.Tensor:
    """Σ_d w_d · InfoNCE on the first d dimensions, re-normalised (plain InfoNCE without dims)."""
    return loss_terms(queries, passages, targets, temperature, dims, weights, passage_mask,
                      focal_gamma=focal_gamma, mixing=mixing).total


def loss_terms(queries: torch.Tensor, passages: torch.Tensor, targets: torch.Tensor, temperature: float,
               dims: Sequence[int] | None = None, weights: Sequence[float] | None = None,
               passage_mask: torch.Tensor | None = None, *, focal_gamma: float = 0.0,
               mixing: Mixing | None = None) -> LossTerms:
    """`matryoshka_info_nce` with the terms it sums (LossTerms)."""
    parts: dict[str, torch.Tensor] = {}
    if not dims:
        total, plain = _info_nce(queries, passages, targets, temperature, passage_mask, focal_gamma=focal_gamma,
                                 mixing=mixing)
        if plain is not None:
            parts = {"infonce": plain, "focal": total.detach()}
        return LossTerms(total, parts)
    weights = weights or [1.0] * len(dims)
    # Each row's negatives are gathered once; a prefix of a gathered vector is the gathered prefix.
    mixed = mixing is not None and mixing.draw.count > 0 and mixing.negatives.shape[1] > 0
    negatives = _row_negatives(passages, mixing)[0] if mixed else None  # type: ignore[arg-type]
    total = queries.new_zeros(())
    plain_sum = None
    for dim, weight in zip(dims, weights, strict=True):
        q = F.normalize(queries[:, :dim], dim=-1)
        p = F.normalize(passages[:, :dim], dim=-1)
        row_negatives = F.normalize(negatives[..., :dim], dim=-1) if negatives is not None else None
        term, plain = _info_nce(q, p, targets, temperature, passage_mask, focal_gamma=focal_gamma,
                                mixing=mixing, row_negatives=row_negatives)
        total = total + weight * term
        parts[f"mrl_{dim}"] = term.detach()
        if plain is not None:
            plain_sum = weight * plain if plain_sum is None else plain_sum + weight * plain
    if plain_sum is not None:
        parts.update(infonce=plain_sum, focal=total.detach())
    return LossTerms(total, parts)
