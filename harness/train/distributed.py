"""Data parallelism under torchrun: process group setup, gathering with gradients, gradient sync.

Gradients are averaged with one flattened all-reduce after backward instead of wrapping the
model in DDP: GradCache runs several backward passes per step, and an explicit reduction keeps
every mode (plain, accumulation, GradCache) on one correct path. The result equals DDP's.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

# the world helpers live below train (data build and teacher passes shard by rank too); re-exported here
from harness.distributed import World, barrier, init_from_env

__all__ = ["World", "average_gradients", "barrier", "gather_with_grad", "init_from_env", "mean_over_ranks",
           "means_over_ranks"]


def gather_with_grad(tensor: torch.Tensor, world: World) -> tuple[torch.Tensor, torch.Tensor, int]:
    """All ranks' rows, concatenated in rank order, with gradients flowing back to their owners.

    Ranks may hold different row counts (rows carry different numbers of hard negatives): rows
    are padded to the largest count and a mask marks the real ones. Returns (rows, mask, offset
    of this rank's first row).
    """
    n = tensor.size(0)
    if not world.distributed:
        return tensor, torch.ones(n, dtype=torch.bool, device=tensor.device), 0
    from torch.distributed.nn.functional import all_gather

    counts = [torch.zeros((), dtype=torch.long, device=tensor.device) for _ in range(world.size)]
    dist.all_gather(counts, torch.tensor(n, dtype=torch.long).to(tensor.device))
    sizes = [int(c) for c in counts]
    biggest = max(sizes)
    padded = torch.cat([tensor, tensor.new_zeros(biggest - n, *tensor.shape[1:])]) if n < biggest else tensor
    pieces = all_gather(padded)  # autograd-aware: backward sends each rank the gradient of its rows
    mask = torch.zeros(world.size * biggest, dtype=torch.bool, device=tensor.device)
    for r, size in enumerate(sizes):
        mask[r * biggest : r * biggest + size] = True
    return torch.cat(pieces), mask, world.rank * biggest


def average_gradients(parameters: list[torch.nn.Parameter], world: World) -> None:
    if not world.distributed:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world.size
    for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(synced)


def mean_over_ranks(value: float, world: World, device: torch.device | None = None) -> float:
    """The global mean of a per-rank scalar (each rank's loss is the mean over its own queries).

    The scalar travels on `device` (NCCL cannot reduce CPU tensors)."""
    if not world.distributed:
        return value
    tensor = torch.tensor(value, dtype=torch.float64).to(device if device is not None else "cpu")
    dist.all_reduce(tensor)
    return float(tensor) / world.size


def means_over_ranks(values: dict[str, torch.Tensor], world: World,
                     device: torch.device | None = None) -> dict[str, float]:
    """`mean_over_ranks` of several per-rank scalars in one all-reduce (the loss's logged terms)."""
    if not values:
        return {}
    stacked = torch.stack([v.detach().to(torch.float64).reshape(()) for v in values.values()])
    if world.distributed:
        stacked = stacked.to(device if device is not None else "cpu")
        dist.all_reduce(stacked)
        stacked = stacked / world.size
    return dict(zip(values, stacked.tolist(), strict=True))
