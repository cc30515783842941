"""The training recipe, one linear function: set up, loop, save (torchtune style).

Seeded end to end (init is the backbone's, batch order and positive choice come from
`train.seed`), so two CPU runs with the same config give the same weights.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.config import VariantConfig
from harness.data.rows import TrainRow
from harness.model import Embedder, format_query
from harness.train.loss import info_nce


def planned_steps(config: VariantConfig, n_rows: int) -> int:
    per_epoch = n_rows // config.train.batch_size
    if per_epoch == 0:
        raise ValueError(f"{n_rows} training rows are fewer than one batch of {config.train.batch_size}")
    return config.train.steps or max(1, math.floor(config.train.epochs * per_epoch))


def _batches(n_rows: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Shuffled batches epoch after epoch (drop last), until `steps` batches exist."""
    out: list[list[int]] = []
    epoch = 0
    while len(out) < steps:
        order = list(range(n_rows))
        random.Random(f"{seed}:epoch{epoch}").shuffle(order)
        out.extend(order[i : i + batch_size] for i in range(0, n_rows - batch_size + 1, batch_size))
        epoch += 1
    return out[:steps]


def _linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train(
    config: VariantConfig, rows: list[TrainRow], output_dir: Path, *, show_progress: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train one variant on `rows`; save the embedder to `output_dir`. Returns (log, summary)."""
    tc, mc = config.train, config.model
    torch.manual_seed(tc.seed)
    rng = random.Random(tc.seed)
    model = Embedder.from_config(mc)
    model.train()

    steps = planned_steps(config, len(rows))
    warmup = math.ceil(tc.warmup_ratio * steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _linear_warmup_decay(s, warmup, steps))

    log: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = tqdm(_batches(len(rows), tc.batch_size, steps, tc.seed), desc="train", disable=not show_progress)
    for step, batch_idx in enumerate(bar, start=1):
        batch = [rows[i] for i in batch_idx]
        queries = [format_query(r.query, r.instruction if mc.instructions else None, mc.instruction_template)
                   for r in batch]
        passages: list[str] = []
        targets: list[int] = []
        for row in batch:
            targets.append(len(passages))
            passages.append(rng.choice(row.pos))
            passages.extend(row.neg)
        q = model.embed(queries, mc.query_max_length)
        p = model.embed(passages, mc.passage_max_length)
        loss = info_nce(q, p, torch.tensor(targets), tc.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % tc.log_every == 0 or step == steps:
            log.append({"step": step, "loss": round(loss.item(), 6), "lr": scheduler.get_last_lr()[0],
                        "passages": len(passages)})
    wall = time.perf_counter() - started
    model.save(output_dir)
    summary = {
        "steps": steps,
        "rows": len(rows),
        "batch_size": tc.batch_size,
        "final_loss": log[-1]["loss"] if log else None,
        "train_seconds": round(wall, 2),
        "examples_per_second": round(steps * tc.batch_size / wall, 2) if wall else None,
    }
    return log, summary
