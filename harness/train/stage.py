"""The train stage: one variant config -> a cached checkpoint folder, on one or many processes.

Called in-process by `ablate` for single-process variants, and by `python -m harness train`
(every rank) when a variant asks for `train.nproc > 1`, under torchrun.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from harness import atomic, locks
from harness.config import VariantConfig
from harness.errors import HarnessRuntimeError
from harness.stages import Stage, compute_once, data_stage, train_stage


def build_data(config: VariantConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Data stage (idempotent): the training table (rows.arrow) and its card, cached by the data hash.

    Written streaming into a staging folder that appears under its final name only when complete.
    """
    stage = data_stage(config)

    def build(tmp: Path) -> None:
        from harness.data.mix import build_table

        card = build_table(config.data, tmp, show_progress=show_progress)
        atomic.write_json(tmp / "card.json", card)

    built = compute_once(stage, build)
    return {"built": built, **json.loads((stage.dir / "card.json").read_text(encoding="utf-8"))}


def work_dir(stage: Stage) -> Path:
    """Where a running train stage keeps resumable checkpoints (beside its final folder)."""
    return stage.dir.with_name(stage.hash + ".partial")


def run_train_stage(config: VariantConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the variant in this process group; rank 0 publishes the stage folder."""
    from harness.data.table import open_table
    from harness.devices import resolve_compute
    from harness.train.card import write_training_card
    from harness.train.distributed import barrier, init_from_env
    from harness.train.loop import train

    compute = resolve_compute(config.train.device, config.train.bf16)
    device, precision = compute.device, compute.precision
    world = init_from_env(device)
    stage = train_stage(config)
    if stage.done():
        return _summary(stage)
    if precision.name != stage.key["precision"]:  # cannot happen unless ranks see different hardware
        raise HarnessRuntimeError(f"train stage {stage.hash} is keyed for {stage.key['precision']} but this process "
                           f"resolved {precision.name} ({precision.reason})")
    with contextlib.ExitStack() as hold:
        if world.is_main:  # one holder per stage across processes; the other ranks follow rank 0
            hold.enter_context(locks.locked(stage.dir, what=f"train stage {stage.hash}"))
            if not stage.done():
                build_data(config, show_progress=show_progress)
        barrier(world)
        if stage.done():  # another process trained it while we waited for the lock
            return {**_summary(stage), "cached": True}
        rows = open_table(data_stage(config).dir)  # memory-mapped: each rank reads only its batches' rows
        work = work_dir(stage)
        work.mkdir(parents=True, exist_ok=True)
        if world.is_main:
            atomic.remove_stale_staging(stage.dir, legacy=True)
            with atomic.staged_dir(stage.dir) as tmp:
                log, summary = train(config, rows, tmp / "model", work_dir=work, world=world,
                                     show_progress=show_progress, device=device, precision=precision)
                atomic.write_text(tmp / "log.jsonl", "".join(json.dumps(e, sort_keys=True) + "\n" for e in log))
                from harness.machine import machine_of

                atomic.write_json(tmp / "summary.json", {**summary, "machine": machine_of(device)})
                write_training_card(tmp / "model", config, data_stage(config).dir, summary)  # README.md
            shutil.rmtree(work, ignore_errors=True)
        else:
            _, summary = train(config, rows, Path(os.devnull), work_dir=work, world=world, show_progress=False,
                               device=device, precision=precision)
        barrier(world)
    return summary


def _summary(stage: Stage) -> dict[str, Any]:
    return json.loads((stage.dir / "summary.json").read_text(encoding="utf-8"))


def launch_torchrun(config: VariantConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Run the train stage under `torchrun --nproc_per_node N` (torch's own launcher) and wait."""
    from harness.backbones import resolve_path

    stage = train_stage(config)
    if stage.done():
        return _summary(stage)
    resolve_path(config.model.backbone)  # build embedded backbones once here, not in N racing ranks
    # The launcher holds the stage's lock for its ranks (they inherit it), so a second process
    # running the same variant waits here instead of starting a second torchrun.
    with locks.locked(stage.dir, what=f"train stage {stage.hash}"):
        if stage.done():
            return {**_summary(stage), "cached": True}
        build_data(config, show_progress=show_progress)
        with atomic.scratch_dir("harness-torchrun") as tmp:
            cfg_path = tmp / "variant.yaml"
            cfg_path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=True), encoding="utf-8")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={config.train.nproc}", "-m", "harness", "train", str(cfg_path)]
            if not show_progress:
                cmd.append("--no-progress")
            returncode = _run_to_the_end(cmd, env=locks.inherit_env(stage.dir))
    if returncode != 0 or not stage.done():
        raise HarnessRuntimeError(f"torchrun training of stage {stage.hash} failed (exit code {returncode}); "
                                  f"its checkpoints in {work_dir(stage)} let the next run resume")
    return _summary(stage)


def _run_to_the_end(cmd: list[str], env: dict[str, str]) -> int:
    """Run torchrun and wait; if this process is stopped meanwhile (a requeued executor job exits
    through SystemExit, Ctrl-C), stop torchrun with SIGTERM, which it forwards to its ranks, so no
    orphaned rank keeps training and holding the stage's lock."""
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
