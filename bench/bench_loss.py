"""Per-step cost of KaLM-Embedding-V2's loss options relative to today's loss, as ratios measured in
this one process (no asserts). Run alone on an idle machine:

    HF_HUB_OFFLINE=1 python bench/bench_loss.py [--reps 30] [--step-reps 6]

1. The loss alone at KaLM's shape: forward + backward of `matryoshka_info_nce` on float32
   embeddings that require gradients — per-device batch 48, 1 positive + 7 hard negatives per row,
   896 dimensions, Matryoshka 896/512/256/128/64 with weights 1/.3/.2/.1/.1, τ = 0.01 — for today's
   loss, focal (γ = 1), mixing (2 and 7 synthetic negatives per query, Beta(2, 2)) and focal + mixing.
   The variants run interleaved, round after round; best and median per variant.
2. One whole optimizer step (TrainStep.micro + finish: forward, loss, backward, AdamW), the step
   train() runs: all-MiniLM-L6-v2, batch 16, 1 positive + 3 hard negatives, 64 tokens per text,
   Matryoshka 384/128, the same interleaving. The loss options' cost there is their share of a step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS: dict[str, dict[str, Any]] = {
    "today": {},
    "focal g=1": {"focal_gamma": 1.0},
    "mixing 2": {"hard_negative_mixing": {"synthetic": 2}},
    "mixing 7": {"hard_negative_mixing": {"synthetic": 7}},
    "focal + mixing 2": {"focal_gamma": 1.0, "hard_negative_mixing": {"synthetic": 2}},
}


def interleaved(runs: dict[str, Callable[[], None]], reps: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each run; one call of every run per round, so load drifts hit all alike."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    """Best and median of each variant and their ratios to today's (the best is the least disturbed
    by other processes on a shared machine; the median says how typical that is)."""
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n=== {title} ===")
    print(f"{'variant':<20}{'best ms':>10}{'x today':>9}{'median ms':>11}{'x today':>9}")
    for name in times:
        print(f"{name:<20}{best[name] * 1e3:>10.2f}{best[name] / best['today']:>9.3f}"
              f"{median[name] * 1e3:>11.2f}{median[name] / median['today']:>9.3f}")


def bench_loss_only(reps: int) -> None:
    import torch
    import torch.nn.functional as F

    from harness.config import TrainConfig
    from harness.train.distributed import World
    from harness.train.step import TrainStep

    rows, group, dim = 48, 8, 896
    dims, weights = [896, 512, 256, 128, 64], [1.0, 0.3, 0.2, 0.1, 0.1]
    g = torch.Generator().manual_seed(0)
    q0 = F.normalize(torch.randn(rows, dim, generator=g), dim=-1)
    p0 = F.normalize(torch.randn(rows * group, dim, generator=g), dim=-1)
    targets = [i * group for i in range(rows)]

    def run_for(options: dict[str, Any]) -> Callable[[], None]:
        tc = TrainConfig.model_validate({"temperature": 0.01, "matryoshka": {"dims": dims, "weights": weights},
                                         **options})
        # the loss alone: no model or optimizer is touched by TrainStep.loss
        step = TrainStep(None, [], None, None, tc, World(), bf16=False, lengths=(8, 8))  # type: ignore[arg-type]

        def run() -> None:
            q, p = q0.clone().requires_grad_(), p0.clone().requires_grad_()
            step.loss(q, p, targets, 0).backward()

        return run

    times = interleaved({name: run_for(options) for name, options in VARIANTS.items()}, reps)
    report(f"loss forward + backward, batch {rows} x {group} passages, dim {dim}, Matryoshka {dims}", times)


def bench_full_step(reps: int) -> None:
    import torch

    from harness.config import ModelConfig, TrainConfig
    from harness.model import Embedder

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import filler_texts, make_step

    rows, negatives, tokens = 16, 3, 64
    queries = filler_texts(rows, tokens, seed=1)
    passages = filler_texts(rows * (1 + negatives), tokens, seed=2)
    targets = [i * (1 + negatives) for i in range(rows)]
    runs = {}
    for name, options in VARIANTS.items():
        torch.manual_seed(0)
        model = Embedder.from_config(ModelConfig(backbone="minilm", instructions=False))
        model.train()
        tc = TrainConfig.model_validate({"matryoshka": {"dims": [384, 128]}, "grad_clip": 1.0, **options})
        step = make_step(model, tc, (tokens, tokens), bf16=False)

        def run(step: Any = step) -> None:
            step.micro(queries, passages, targets)
            step.finish()

        runs[name] = run
    times = interleaved(runs, reps, warmup=1)
    report(f"whole step (minilm, batch {rows}, 1 + {negatives} passages per row, {tokens} tokens, AdamW)", times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30, help="timed rounds of the loss-only benchmark")
    parser.add_argument("--step-reps", type=int, default=6, help="timed rounds of the whole-step benchmark (0 = skip)")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    bench_loss_only(args.reps)
    if args.step_reps:
        bench_full_step(args.step_reps)


if __name__ == "__main__":
    main()
