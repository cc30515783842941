"""GradCache (Gao et al., 2021): the exact loss and gradients of a large contrastive batch with
the activation memory of a small chunk, as sentence-transformers' CachedMultipleNegativesRankingLoss.

1. embed every chunk without a graph, remembering the RNG state before each chunk;
2. compute the loss on those embeddings as leaves, backpropagate to the embeddings only;
3. re-embed each chunk with a graph under its remembered RNG state (same dropout) and
   backpropagate the cached embedding gradients into the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class RandContext:
    """Capture the CPU (and CUDA) RNG state now; replay it later inside `with`."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def __enter__(self) -> None:
        self._saved = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if self.cuda is not None else None)
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)

    def __exit__(self, *exc: object) -> None:
        torch.set_rng_state(self._saved[0])
        if self._saved[1] is not None:
            torch.cuda.set_rng_state_all(self._saved[1])


def _chunks(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def cached_backward(
    embed: Callable[[list[str], int], torch.Tensor],
    queries: Sequence[str],
    passages: Sequence[str],
    lengths: tuple[int, int],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    chunk_size: int,
) -> torch.Tensor:
    """Run steps 1-3; gradients accumulate in the model's parameters. Returns the loss (detached)."""
    sides = [(_chunks(queries, chunk_size), lengths[0]), (_chunks(passages, chunk_size), lengths[1])]
    cached: list[list[tuple[torch.Tensor, RandContext]]] = []
    for chunks, max_length in sides:
        side = []
        for chunk in chunks:
            state = RandContext()
            with torch.no_grad():
                side.append((embed(chunk, max_length).float(), state))
        cached.append(side)
    q = torch.cat([e for e, _ in cached[0]]).requires_grad_()
    p = torch.cat([e for e, _ in cached[1]]).requires_grad_()
    loss = loss_fn(q, p)
    loss.backward()
    grads = (q.grad.split([e.size(0) for e, _ in cached[0]]), p.grad.split([e.size(0) for e, _ in cached[1]]))
    for (chunks, max_length), side, side_grads in zip(sides, cached, grads, strict=True):
        for chunk, (_, state), grad in zip(chunks, side, side_grads, strict=True):
            with state:
                again = embed(chunk, max_length).float()
            again.backward(grad)
    return loss.detach()
