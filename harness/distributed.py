"""The process world under torchrun: which rank this is, and the few collectives every layer needs.

Data builds (teacher-pass shards), training and evaluation all ask "am I rank 0?" and wait at a
barrier, so these live below them; the gradient collectives stay in harness.train.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


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
    import torch
    import torch.distributed as dist

    device = device if device is not None else torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(device if device.index is not None else local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=process_group_backend(device))
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank, joined=True)


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()
