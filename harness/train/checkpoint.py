"""Resumable training state: model, optimizer, scheduler and every rank's RNG, saved atomically every N steps.

Batch order and positive choice are pure functions of (seed, step), so restoring this state
and continuing from `step + 1` ends with the same weights as an uninterrupted run. The RNG
states of all ranks are gathered into the one file rank 0 writes (harness.train.rng), so the
checkpoint appears complete or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.atomic import staged_dir
from harness.train.distributed import World
from harness.train.rng import restore_rank_state, state_of_rank

STATE_FILE = "state.pt"


def save_checkpoint(work_dir: Path, step: int, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                    log: list[dict[str, Any]], rng_states: list[dict[str, Any]]) -> Path:
    """Rank 0 writes it; `rng_states` is every rank's RNG state in rank order (rng.gather_states)."""
    final = work_dir / f"step-{step:08d}"
    with staged_dir(final) as tmp:
        torch.save({
            "step": step,
            "model": {k: v for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_states,
            "log": log,
        }, tmp / STATE_FILE)
    for older in work_dir.glob("step-*"):
        if older != final and older.is_dir():
            import shutil

            shutil.rmtree(older, ignore_errors=True)
    return final


def latest_checkpoint(work_dir: Path) -> Path | None:
    done = sorted(p for p in work_dir.glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, world: World,
                    device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """Every rank loads the same model and optimizer state, and its own RNG state."""
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    # checkpoints written before every rank's RNG was kept hold rank 0's only
    saved = state.get("rng") or [{"cpu": state["torch_rng"], "cuda": None}]
    rank_rng = state_of_rank(saved, world, str(path))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rank_state(rank_rng, device)
    return int(state["step"]), list(state["log"])
