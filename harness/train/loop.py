"""The training recipe, one linear function: set up, loop, save (torchtune style).

KaLM's fine-tuning: InfoNCE with temperature over in-batch negatives gathered across ranks
plus each row's hard negatives, optional Matryoshka, AdamW with linear warm-up and decay,
gradient clipping and accumulation, full or LoRA, bf16 autocast, gradient checkpointing and
GradCache. Seeded end to end: batch order (semi-homogeneous sampler) and the positive picked
for each row are pure functions of (seed, step), so a resumed run ends where an
uninterrupted one does.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.config import VariantConfig
from harness.data.rows import TrainRow
from harness.data.sampler import SemiHomogeneousBatchSampler
from harness.data.table import task_labels
from harness.devices import Precision, resolve_compute
from harness.errors import HarnessError
from harness.model import Embedder, format_query
from harness.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from harness.train.distributed import World, mean_over_ranks, means_over_ranks
from harness.train.replicas import broadcast_from_main
from harness.train.rng import gather_states, seed_for_model, seed_for_rank
from harness.train.step import TrainStep
from harness.train.trackers import StepMeter


def planned_steps(config: VariantConfig, n_rows: int, world_size: int = 1) -> int:
    tc = config.train
    global_batch = tc.batch_size * world_size
    micro_per_epoch = n_rows // global_batch
    if micro_per_epoch == 0:
        raise HarnessError(f"{n_rows} training rows are fewer than one global batch of {global_batch} "
                           f"(train.batch_size x train.nproc)")
    return tc.steps or max(1, math.floor(tc.epochs * micro_per_epoch / tc.gradient_accumulation))


def micro_batches(rows: Sequence[TrainRow], config: VariantConfig, world: World, count: int) -> list[list[int]]:
    """This rank's first `count` micro-batches, epoch after epoch, from the task-aware sampler."""
    sampler = SemiHomogeneousBatchSampler(
        task_labels(rows), per_device_batch_size=config.train.batch_size,
        ratio=config.train.homogeneous_ratio, seed=config.train.seed, rank=world.rank, world_size=world.size)
    out: list[list[int]] = []
    epoch = 0
    while len(out) < count:
        sampler.set_epoch(epoch)
        out.extend(list(batch) for batch in sampler)
        epoch += 1
    return out[:count]


def _adamw(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """The fused AdamW kernel (one pass over all parameters; what sentence-transformers' trainer
    uses) where this torch build has it for the parameters' device, else the default implementation."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        fused = all(p.device.type in _get_fused_kernels_supported_devices() for p in params)
    except ImportError:  # pragma: no cover - older torch
        fused = False
    if fused:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _lr_lambda(warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _texts(rows: Sequence[TrainRow], idx: list[int], config: VariantConfig, micro_step: int) -> tuple[list[str], list[str], list[int]]:
    mc, seed = config.model, config.train.seed
    queries, passages, targets = [], [], []
    for i in idx:
        row = rows[i]
        queries.append(format_query(row.query, row.instruction if mc.instructions else None, mc.instruction_template))
        targets.append(len(passages))
        passages.append(random.Random(f"{seed}:{micro_step}:{i}").choice(row.pos))
        passages.extend(row.neg)
    return queries, passages, targets


def _prepare_model(config: VariantConfig) -> Embedder:
    tc = config.train
    model = Embedder.from_config(config.model)
    if tc.gradient_checkpointing:
        backbone = model.backbone
        if hasattr(backbone, "activation_checkpointing_enable"):  # transformers 5's name
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if tc.lora is not None:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise HarnessError("train.lora needs the peft package: pip install peft") from None
        try:
            model.backbone = get_peft_model(model.backbone, LoraConfig(
                r=tc.lora.r, lora_alpha=tc.lora.alpha, lora_dropout=tc.lora.dropout,
                target_modules=tc.lora.targets))
        except ValueError as exc:
            raise HarnessError(f"train.lora.targets {tc.lora.targets}: {exc}") from None
    return model


def train(
    config: VariantConfig,
    rows: Sequence[TrainRow],
    output_dir: Path,
    *,
    work_dir: Path | None = None,
    world: World | None = None,
    show_progress: bool = True,
    stop_after: int | None = None,
    device: torch.device | None = None,
    precision: Precision | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train one variant on `device` (default: `train.device` resolved here); rank 0 saves it to
    `output_dir`. `work_dir` holds resumable checkpoints.

    Returns (log, summary). `stop_after` ends the loop early (tests of resume), saving nothing.
    """
    world = world or World()
    tc, mc = config.train, config.model
    if device is None or precision is None:
        compute = resolve_compute(device or tc.device, tc.bf16)
        device, precision = compute.device, precision or compute.precision
    seed_for_model(tc.seed)  # the same model on every rank (LoRA's adapters are drawn here) ...
    model = _prepare_model(config).to(device)
    broadcast_from_main(model, world)  # ... and, whatever a build drew, rank 0's weights everywhere
    seed_for_rank(tc.seed, world)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]

    steps = planned_steps(config, len(rows), world.size)
    warmup = math.ceil(tc.warmup_ratio * steps)
    optimizer = _adamw(params, tc.lr, tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup, steps))
    batches = micro_batches(rows, config, world, steps * tc.gradient_accumulation)
    dims = tc.matryoshka.dims if tc.matryoshka else None
    if dims and max(dims) > model.dim:
        raise HarnessError(f"train.matryoshka.dims {dims}: the backbone has only {model.dim} dimensions")

    start, log = 0, []
    if work_dir is not None and (ckpt := latest_checkpoint(work_dir)) is not None:
        start, log = load_checkpoint(ckpt, model, optimizer, scheduler, world, device)

    step_fn = TrainStep(model, params, optimizer, scheduler, tc, world, bf16=precision.bf16,
                        lengths=(mc.query_max_length, mc.passage_max_length))
    meter = StepMeter(config, world, device, model.tokenizer, enabled=world.is_main)  # log fields + trackers
    started = time.perf_counter()
    bar = tqdm(range(start + 1, steps + 1), desc="train", disable=not (show_progress and world.is_main),
               initial=start, total=steps)
    for step in bar:
        losses = []
        for micro in range((step - 1) * tc.gradient_accumulation, step * tc.gradient_accumulation):
            queries, passages, targets = _texts(rows, batches[micro], config, micro)
            meter.count(queries, passages)
            losses.append(step_fn.micro(queries, passages, targets, micro))
        step_fn.finish()
        step_loss = mean_over_ranks(float(torch.stack(losses).sum()), world, device)
        bar.set_postfix(loss=f"{step_loss:.4f}")
        if step % tc.log_every == 0 or step == steps:
            terms = means_over_ranks(step_fn.terms, world, device)  # Matryoshka / focal terms, like the loss
            log.append(meter.entry(step, step_loss, scheduler.get_last_lr()[0], step_fn.grad_norm, terms))
        if work_dir is not None and tc.checkpoint_every and step % tc.checkpoint_every == 0 and step < steps:
            rng_states = gather_states(world, device)  # every rank's stream, into rank 0's one file
            if world.is_main:
                save_checkpoint(work_dir, step, model, optimizer, scheduler, log, rng_states)
        if stop_after is not None and step >= stop_after:
            meter.finish()
            return log, {"stopped_at": step}
    wall = time.perf_counter() - started
    meter.finish()
    if world.is_main:
        if tc.lora is not None:
            model.backbone = model.backbone.merge_and_unload()  # float32 base: the merge loses nothing
        model.save(output_dir, matryoshka_dims=dims, dtype=tc.export_dtype)
    summary = {
        "steps": steps,
        "resumed_from": start,
        "rows": len(rows),
        "global_batch": tc.batch_size * world.size,
        "processes": world.size,
        "device": str(device),
        "precision": precision.name,
        "precision_reason": precision.reason,
        "final_loss": log[-1]["loss"] if log else None,
        "train_seconds": round(wall, 2),
        **({"peak_device_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
           if device.type == "cuda" else {}),
        "examples_per_second": round((steps - start) * tc.gradient_accumulation * tc.batch_size * world.size / wall, 2)
        if wall else None,
    }
    return log, summary
