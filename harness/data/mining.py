"""Which teacher-ranked candidates may become a row's hard negatives: the mining rules.

- `window` — KaLM's rule: candidates at teacher ranks [lo, hi); ranks above lo are skipped as likely
  false negatives (KaLM-Embedding, arXiv 2501.01028, `train/hn_mine.py`: ranks 50-100).
- the positive-aware rules of NV-Retriever (Moreira et al. 2024, arXiv 2407.15831), over the
  teacher's whole ranking (ranks [0, depth)): a candidate is eligible when its teacher score is
  strictly below a ceiling, and the ones at or above it are removed as likely false negatives —
  `top_k_abs`: ceiling = `max_score` (TopK-Abs); `margin_pos`: ceiling = positive score − `margin`
  (TopK-MarginPos); `perc_pos`: ceiling = `percent` × positive score (TopK-PercPos; the paper's best
  setting is 95 %; for a positive scoring <= 0, which the paper does not consider, the ceiling is
  positive − (1 − percent)·|positive|, still below the positive). The positive score is the row's
  best positive (the teacher pass stores the best cosine among a row's positives; NVIDIA's
  NeMo-Curator miner anchors on the lowest one instead, and keeps scores equal to the ceiling,
  where "below" — the paper's and the issue's word — does not).

Sampling among the eligible candidates: `hardest` takes the highest-ranked ones (NV-Retriever's
TopK-*), `random` draws them uniformly with the data seed (KaLM's draw within its window); either way
the chosen negatives are listed hardest first. The default is each method's own: random for the
window, hardest for the positive-aware rules.

A rule only cuts a cached teacher ranking: every method and parameter value of a sweep reuses one
teacher pass (harness.data.filtering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness.config import NEGATIVE_PARAMETERS as PARAMETERS

Method = Literal["window", "top_k_abs", "margin_pos", "perc_pos"]
Sampling = Literal["hardest", "random"]
METHODS: tuple[str, ...] = ("window", "top_k_abs", "margin_pos", "perc_pos")
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


@dataclass(frozen=True)
class MiningRule:
    """One mining rule with its parameters (from `data.filter.negatives` and `data.filter.window`)."""

    method: Method = "window"
    window: tuple[int, int] = (50, 100)
    max_score: float | None = None
    margin: float | None = None
    percent: float | None = None
    sampling: Sampling | None = None

    @property
    def sampling_used(self) -> Sampling:
        return self.sampling or ("random" if self.method == "window" else "hardest")

    def candidate_ranks(self, depth: int) -> tuple[int, int]:
        """Ranks [lo, hi) the rule draws from, within a ranking of `depth` items."""
        if self.method == "window":
            return min(self.window[0], depth), min(self.window[1], depth)
        return 0, depth

    def ceilings(self, positive_score: np.ndarray) -> np.ndarray | None:
        """Per-row score ceiling (eligible = strictly below), or None for the rank window."""
        if self.method == "window":
            return None
        if self.method == "top_k_abs":
            assert self.max_score is not None
            return np.full(positive_score.shape, self.max_score, dtype=np.float64)
        if self.method == "margin_pos":
            assert self.margin is not None
            return positive_score.astype(np.float64) - self.margin
        assert self.percent is not None
        # percent x pos for a positive score; written pos - (1 - percent)|pos| so that a row whose
        # positive scores <= 0 (NV-Retriever assumes it never does) still needs negatives below it
        positive = positive_score.astype(np.float64)
        return positive - (1.0 - self.percent) * np.abs(positive)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "sampling": self.sampling_used}
        if self.method == "window":
            out["window"] = list(self.window)
        else:
            name = PARAMETERS[self.method][0]
            out[name] = getattr(self, name)
        return out


def summarise(values: np.ndarray) -> dict[str, Any]:
    """Count, mean and quantiles (p0, p10, p25, p50, p75, p90, p100) of a score list, rounded."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    return {"n": int(values.size), "mean": round(float(values.mean()), 4),
            **{f"p{round(q * 100)}": round(float(v), 4) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES),
                                                                       strict=True)}}


def relative_scores(negative: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    """The card's view of kept negatives against their row's positive: the margin (positive − negative)
    for all, the ratio (negative / positive, what perc_pos bounds) where the positive scores > 0."""
    negative, positive = np.asarray(negative, np.float64), np.asarray(positive, np.float64)
    above = positive > 0
    return {"ratio_to_positive": summarise(negative[above] / positive[above]),
            "margin_below_positive": summarise(positive - negative),
            "positive_not_above_zero": int((~above).sum())}


def rule_from_config(spec: Any) -> MiningRule:
    """The rule a `FilterConfig` describes."""
    neg = spec.negatives
    return MiningRule(method=neg.method, window=tuple(spec.window), max_score=neg.max_score, margin=neg.margin,
                      percent=neg.percent, sampling=neg.sampling)
