"""Data parallelism under torchrun: process group setup, gathering with gradients, gradient sync.

Gradients are averaged with one flattened all-reduce after backward instead of wrapping the
model in DDP: GradCache runs several backward passes per step, and an explicit reduction keeps
every mode (plain, accumulation, GradCache) on one correct path. The result equals DDP's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    joined: bool = False  # a process group exists (always under torchrun, even with one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Collectives run: several processes, or one process that torchrun put in a group (so a
        one-GPU job exercises the same NCCL code path as eight)."""
        return self.size > 1 or self.joined


def init_from_env(device: torch.device | None = None) -> World:
    """Join the process group torchrun describes (also a one-process one); no group outside torchrun.

    The backend follows the device the tensors live on — NCCL for CUDA, gloo for everything else —
    not merely whether a GPU exists (a CPU run on a GPU machine must not pick NCCL).
    """
    from harness.devices import process_group_backend

    if "WORLD_SIZE" not in os.environ or "MASTER_ADDR" not in os.environ:  # not under torchrun: no group
        return World()
    device = device if device is not None else torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(device if device.index is not None else local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=process_group_backend(device))
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank, joined=True)


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


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
