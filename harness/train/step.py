"""One optimizer step of the recipe, split into the phases a benchmark times.

Shared by the training loop and bench/bench_train.py, so the benchmark measures exactly the step
that trains. Every tensor the step creates (batches, targets, gathered negatives, masks) lives on
the model's device; bf16 enters only through autocast, the loss is computed in float32 and the
master weights stay float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from harness.config import TrainConfig
from harness.devices import autocast
from harness.model import Embedder
from harness.train.distributed import World, average_gradients, gather_with_grad
from harness.train.gradcache import cached_backward
from harness.train.loss import Mixing, draw_mixing, loss_terms, own_negatives


class TrainStep:
    """`micro()` once per micro-batch (forward + backward), then `finish()` (sync, clip, AdamW)."""

    def __init__(self, model: Embedder, params: list[torch.nn.Parameter], optimizer: Any, scheduler: Any,
                 tc: TrainConfig, world: World, *, bf16: bool, lengths: tuple[int, int]) -> None:
        self.model, self.params, self.optimizer, self.scheduler = model, params, optimizer, scheduler
        self.tc, self.world, self.bf16, self.lengths = tc, world, bf16, lengths
        self.dims = tc.matryoshka.dims if tc.matryoshka else None
        self.weights = tc.matryoshka.weights if tc.matryoshka else None
        self.calls = 0  # micro-steps run: the mixing seed when the caller gives no index
        # the loss's Matryoshka / focal terms (LossTerms.parts): the last loss() call's, their sum over
        # this step's micro-batches (scaled like the loss), and the last finished step's, for the log
        self.last_terms: dict[str, torch.Tensor] = {}
        self._step_terms: dict[str, torch.Tensor] = {}
        self.terms: dict[str, torch.Tensor] = {}

    def embed(self, texts: list[str], max_length: int) -> torch.Tensor:
        with autocast(self.model.device, self.bf16):
            return self.model.embed(texts, max_length)

    def loss(self, q: torch.Tensor, p: torch.Tensor, targets: Sequence[int], index: int = 0) -> torch.Tensor:
        """InfoNCE of this rank's queries against every rank's passages (gathered with gradients),
        with focal re-weighting and hard-negative mixing when the config asks; `index` is the
        micro-step, the seed of the mixing draw. Keeps the loss's terms in `last_terms`."""
        gathered, mask, offset = gather_with_grad(p, self.world)
        # Built on the CPU and moved: one small copy, and the same code path on every device.
        target = torch.tensor(list(targets), dtype=torch.long).to(q.device) + offset
        mixing = self.mixing(targets, p.size(0), offset, index, q.device)
        out = loss_terms(q, gathered, target, self.tc.temperature, self.dims, self.weights, mask,
                         focal_gamma=self.tc.focal_gamma, mixing=mixing)
        self.last_terms = out.parts
        return out.total

    def mixing(self, targets: Sequence[int], n_passages: int, offset: int, index: int,
               device: torch.device) -> Mixing | None:
        """This rank's rows' own negatives and their slice of the global batch's mixing draw."""
        spec = self.tc.hard_negative_mixing
        if spec is None or spec.synthetic == 0:
            return None
        rows = len(targets)
        draw = draw_mixing(self.tc.seed, index, rows, spec.synthetic, spec.beta, spec.coefficient,
                           first_row=self.world.rank * rows, global_rows=self.world.size * rows)
        return Mixing(own_negatives(targets, n_passages, offset).to(device), draw.to(device), spec.hardest, spec.detach)

    def forward_loss(self, queries: list[str], passages: list[str], targets: Sequence[int],
                     index: int = 0) -> torch.Tensor:
        """The plain (non-GradCache) forward pass: embeddings in float32, then the loss, with a graph."""
        q = self.embed(queries, self.lengths[0]).float()
        p = self.embed(passages, self.lengths[1]).float()
        return self.loss(q, p, targets, index)

    def micro(self, queries: list[str], passages: list[str], targets: Sequence[int],
              index: int | None = None) -> torch.Tensor:
        """Forward and backward of one micro-batch, scaled for gradient accumulation; the detached loss.

        `index` is the micro-step's position in the run (the loop passes it, so a resumed run draws
        the same mixing numbers); by default the count of calls so far."""
        index = self.calls if index is None else index
        self.calls += 1
        scale = self.tc.gradient_accumulation
        if self.tc.grad_cache:
            loss = cached_backward(self.embed, queries, passages, self.lengths,
                                   lambda q, p: self.loss(q, p, targets, index) / scale, self.tc.grad_cache_chunk)
        else:
            loss = self.forward_loss(queries, passages, targets, index) / scale
            loss.backward()
        for key, value in self.last_terms.items():  # summed over micro-batches like the loss
            self._step_terms[key] = self._step_terms.get(key, 0.0) + value / scale
        return loss.detach()

    def finish(self) -> None:
        """Average gradients across ranks, clip, update, advance the schedule; then clear gradients."""
        average_gradients(self.params, self.world)
        # the pre-clip global norm, for the log and trackers (max_norm inf: measured, not clipped)
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.tc.grad_clip or float("inf")))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.terms, self._step_terms = self._step_terms, {}
