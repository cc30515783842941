"""One rank of bench/gpu_smoke.py's multi-rank check, run under `torchrun --nproc_per_node N`.

Trains a LoRA variant (the case where ranks used to start from different adapters) for a few
steps through harness.train.loop.train, then reports on rank 0, as one JSON line: the largest
|w - w_rank0| over all parameters and ranks (0 when the replicas agree), the process-group backend
(NCCL on GPUs), and each rank's device and the precision `bf16: auto` resolved there.

Usage (from the repository root): torchrun --standalone --nproc_per_node 2 bench/gpu_ranks.py VARIANT.yaml STEPS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    sys.path.insert(0, str(REPO))
    import torch
    import torch.distributed as dist

    import harness.train.loop as loop
    from harness.cli import load_variant_config
    from harness.data.mix import build_mix
    from harness.devices import cpu_capability, resolve_compute
    from harness.train.distributed import init_from_env
    from harness.train.replicas import max_replica_difference

    config = load_variant_config(Path(sys.argv[1]))
    steps = int(sys.argv[2])
    compute = resolve_compute(config.train.device, config.train.bf16)
    device, precision = compute.device, compute.precision
    world = init_from_env(device)
    built: dict[str, Any] = {}
    prepare = loop._prepare_model
    loop._prepare_model = lambda c: built.setdefault("model", prepare(c))  # keep the model train() builds
    rows, _ = build_mix(config.data)
    log, _ = loop.train(config, rows, Path("/dev/null"), world=world, show_progress=False, stop_after=steps,
                        device=device, precision=precision)
    diff = max_replica_difference(built["model"], world)
    where = {"rank": world.rank, "device": str(device), "precision": precision.name, "reason": precision.reason,
             "capability": (".".join(map(str, torch.cuda.get_device_capability(device))) if device.type == "cuda"
                            else cpu_capability())}
    ranks: list[Any] = [None] * world.size
    dist.all_gather_object(ranks, where)
    if world.is_main:
        print(json.dumps({"max_diff": diff, "backend": dist.get_backend(), "steps": len(log),
                          "final_loss": log[-1]["loss"] if log else None, "ranks": ranks}), flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
