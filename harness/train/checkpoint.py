"""Resumable training state: model, optimizer, scheduler and RNG, saved atomically every N steps.

Batch order and positive choice are pure functions of (seed, step), so restoring this state
and continuing from `step + 1` ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.atomic import staged_dir

STATE_FILE = "state.pt"


def save_checkpoint(work_dir: Path, step: int, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                    log: list[dict[str, Any]]) -> Path:
    final = work_dir / f"step-{step:08d}"
    with staged_dir(final) as tmp:
        torch.save({
            "step": step,
            "model": {k: v for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
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


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> tuple[int, list[dict[str, Any]]]:
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"]), list(state["log"])
