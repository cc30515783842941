"""Data-parallel replicas start as one model: rank 0's parameters and buffers are sent to every rank.

Gradients are averaged by hand (harness.train.distributed), not by DDP, so nothing else would make
the replicas equal: a LoRA adapter initialised from each rank's RNG, or any randomly initialised
head, would otherwise differ per rank, and rank 0 would save a model updated with gradients that
other models computed. Every rank also builds under the same seed, so the broadcast is a check that
costs one pass over the weights rather than the only thing that makes ranks agree.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from harness.train.distributed import World


def broadcast_from_main(model: torch.nn.Module, world: World) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's, in place (before the first step)."""
    if not world.distributed:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def max_replica_difference(model: torch.nn.Module, world: World) -> float:
    """The largest |w - w_rank0| over all parameters and ranks (0.0 when the replicas agree): a
    diagnostic for smoke tests, one all-reduce of the parameters."""
    if not world.distributed:
        return 0.0
    worst = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    with torch.no_grad():
        for param in model.parameters():
            main = param.detach().clone()
            dist.broadcast(main, src=0)
            worst = torch.maximum(worst, (param.detach() - main).abs().max().to(torch.float64))
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)
