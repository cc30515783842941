"""Evaluation cost of each offline-suite task, relative to HarnessCodeRetrieval (the quickstart's).

One model (the quickstart's minilm settings, float32), loaded once; every task is evaluated with a
fresh encoder (no embedding memo shared between tasks) through the harness's own
`evaluate_task` (mteb.evaluate + per-unit extraction), after one warm-up pass over all tasks.
Prints, per task, the median CPU time of this process and of the wall clock, and both as ratios to
HarnessCodeRetrieval: on a shared machine the CPU-time ratio is the one to trust.
    python bench/bench_suite_tasks.py [--repeats 3] [--tasks A B ...] [--languages amh hau ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs from a checkout, installed or not
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MTEB_CACHE", tempfile.mkdtemp(prefix="bench-mteb-"))

REFERENCE = "HarnessCodeRetrieval"


def main() -> None:
    from harness.evaluate.benchmarks import OFFLINE_TASKS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(OFFLINE_TASKS), help="harness tasks (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per task")
    parser.add_argument("--languages", nargs="+", default=None,
                        help="as eval.languages (the quickstart's: amh hau ibo yor swh xho zul gaz som kin)")
    args = parser.parse_args()

    import torch

    from harness.config import ModelConfig
    from harness.evaluate.encoder import HarnessEncoder
    from harness.evaluate.resolve import restrict_languages
    from harness.evaluate.run import evaluate_task
    from harness.evaluate.tasks import get_task
    from harness.model import Embedder

    names = list(dict.fromkeys([REFERENCE, *args.tasks]))
    config = ModelConfig(backbone="minilm", pooling="mean", instructions=True, query_max_length=40,
                         passage_max_length=32)
    embedder = Embedder.from_config(config).eval()
    tasks = {name: get_task(name) for name in names}
    for task in tasks.values():
        restrict_languages(task, args.languages)
    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}, threads: {torch.get_num_threads()}, "
          f"minilm float32, repeats {args.repeats}")

    def run(name: str) -> tuple[float, float]:
        encoder = HarnessEncoder(embedder, name="bench/minilm", revision="bench", show_progress=False)
        started, started_cpu = time.perf_counter(), time.process_time()
        evaluate_task(encoder, tasks[name])
        return time.perf_counter() - started, time.process_time() - started_cpu

    for name in names:  # warm-up: lazy imports, data loading
        run(name)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            w, c = run(name)
            wall[name].append(w)
            cpu[name].append(c)
    ref_cpu, ref_wall = statistics.median(cpu[REFERENCE]), statistics.median(wall[REFERENCE])
    print(f"{'task':32s} {'type':18s} {'cpu s':>7s} {'ratio':>6s} {'wall s':>7s} {'ratio':>6s}")
    for name in names:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"{name:32s} {tasks[name].metadata.type:18s} {c:7.2f} {c / ref_cpu:6.2f} {w:7.2f} {w / ref_wall:6.2f}")


if __name__ == "__main__":
    main()
