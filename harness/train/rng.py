"""Random streams of a training run: one model-building stream shared by every rank, then one
stream per rank for what must differ (dropout, per-rank sampling draws), and their checkpointing.

The model is built under `seed` on every rank, so randomly initialised parts (LoRA's A matrices)
are the same everywhere. Rank r > 0 then switches to `seed + r`; rank 0 keeps the stream a
single process has, so a one-process run is the same whether or not it is one rank of many.
A checkpoint holds every rank's state (gathered to rank 0), and each rank restores its own,
so a resumed multi-process run continues every rank's stream where it stopped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from harness.errors import HarnessError
from harness.train.distributed import World


def seed_for_model(seed: int) -> None:
    """Before building the model: the same stream on every rank."""
    torch.manual_seed(seed)


def seed_for_rank(seed: int, world: World) -> None:
    """After building the model: rank r > 0 gets its own stream, seed + r."""
    if world.rank:
        torch.manual_seed(seed + world.rank)


def rank_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG state: the CPU generator and, on a GPU, the generator of its device."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rank_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_states(world: World, device: torch.device) -> list[dict[str, Any]]:
    """Every rank's RNG state, in rank order (a collective: every rank calls it at the same step)."""
    state = rank_state(device)
    if not world.distributed:
        return [state]
    states: list[Any] = [None] * world.size
    dist.all_gather_object(states, state)
    return states


def state_of_rank(saved: list[dict[str, Any]], world: World, where: str) -> dict[str, Any]:
    """This rank's entry of a checkpoint's RNG states; the run's process count is in the train
    stage's key, so a mismatch means a checkpoint from another run."""
    if len(saved) != world.size:
        raise HarnessError(f"{where}: holds the RNG state of {len(saved)} process(es), this run has {world.size}; "
                           f"delete the folder to train from the start")
    return saved[world.rank]
