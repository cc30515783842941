"""Cost of committing each evaluation task on its own (issue 9, point 1) vs the former single call.

Same encoder (loaded once), same tasks, run alternately in this process:
  one-call : the former path — one `mteb.evaluate` over all tasks (mteb's ResultCache written, as it
             was), then every task's eval stage (scores.json + units.parquet) written at the end;
  per-task : today's `run_cached_eval` — one `mteb.evaluate` per task, each task's stage (scores,
             units, mteb's TaskResult JSON and model meta) committed atomically as soon as it is done.
Prints each repeat's wall and CPU time, the medians and the ratio per-task / one-call, and the fixed
cost of one whole per-task step on a 3-query task (an upper bound of what per-task commits add per task).
The encoder memoizes each text's embedding, so after the warm-up no path encodes: the ratio compares
everything else (mteb's scoring, predictions, units, writes) — the part per-task commits can add to.
    python bench/bench_eval_commit.py [--backbone minilm] [--repeats 3] [--tasks A B ...]
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

QUICKSTART_TASKS = ["HarnessCodeRetrieval", "HarnessCLDRBitextMining", "HarnessFEBRLTupleMatching",
                    "HarnessValentineColumnMatching"]


def one_call(encoder: object, tasks: dict[str, object], root: Path) -> None:
    """The evaluation path before per-task commits (harness/evaluate/run.py + cached.py at 018af7e)."""
    import mteb
    import pandas as pd

    from harness import atomic
    from harness.evaluate.run import _task_scores
    from harness.evaluate.units import load_predictions, units_from_predictions

    with tempfile.TemporaryDirectory(prefix="harness-pred-") as pred_dir:
        result = mteb.evaluate(encoder, list(tasks.values()), cache=mteb.ResultCache(root / "mteb"),
                               overwrite_strategy="always", prediction_folder=pred_dir, show_progress_bar=False)
        scores, frames = {}, []
        for task_result in result.task_results:
            task = tasks[task_result.task_name]
            scores[task_result.task_name] = {"type": task.metadata.type,
                                             **_task_scores(task_result, task.metadata.main_score)}
            frame, _ = units_from_predictions(task, load_predictions(Path(pred_dir), task_result.task_name),
                                              task_result)
            frames.append(frame)
    units = pd.concat(frames, ignore_index=True)
    for name in tasks:
        with atomic.staged_dir(root / "eval" / name) as tmp:
            atomic.write_json(tmp / "scores.json", scores[name])
            atomic.write_parquet(tmp / "units.parquet", units[units["task"] == name].reset_index(drop=True))


def per_task(encoder: object, tasks: dict[str, object], root: Path) -> None:
    from harness.evaluate.cached import run_cached_eval
    from harness.stages import Stage

    os.environ["HARNESS_CACHE"] = str(root)  # fresh stages: nothing cached
    stages = {name: Stage("eval", {"bench": str(root), "task": name}) for name in tasks}
    run_cached_eval(lambda: encoder, tasks, stages, lambda _: None, show_progress=False)
    assert all(s.done() for s in stages.values())


def fixed_cost(encoder: object, repeats: int) -> float:
    """Median seconds of one whole per-task step (mteb.evaluate + units + commit of all four files) on
    a 3-query task: an upper bound of what committing task by task adds per task."""
    from harness.evaluate.tasks import get_task

    folder = Path(tempfile.mkdtemp(prefix="bench-tiny-task-"))
    files = {
        "task.yaml": "name: BenchTinyColumns\nkind: column\n",
        "tables/a.csv": "county_name,population,state\nAutauga,55869,AL\nBaldwin,223234,AL\n",
        "tables/b.csv": "County,Pop. 2020,State code\nAutauga,58805,AL\nBaldwin,231767,AL\n",
        "queries.csv": "query_id,table,column\nq1,a.csv,county_name\nq2,a.csv,population\nq3,a.csv,state\n",
        "matches.csv": "query_id,candidate_id\nq1,b.csv:County\nq2,b.csv:Pop. 2020\nq3,b.csv:State code\n",
    }
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    task = get_task(str(folder))
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-eval-") as root:
            started = time.perf_counter()
            per_task(encoder, {"BenchTinyColumns": task}, Path(root))
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="minilm", help="embedded backbone (default minilm, as the quickstart)")
    parser.add_argument("--tasks", nargs="+", default=QUICKSTART_TASKS, help="harness tasks (default: quickstart's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path, alternating")
    args = parser.parse_args()

    import torch

    from harness.config import ModelConfig
    from harness.evaluate.encoder import HarnessEncoder
    from harness.evaluate.tasks import get_task
    from harness.model import Embedder

    config = ModelConfig(backbone=args.backbone, query_max_length=32, passage_max_length=64)
    encoder = HarnessEncoder(Embedder.from_config(config).eval(), name=f"bench/{args.backbone}", revision="bench",
                             show_progress=False)
    tasks = {name: get_task(name) for name in args.tasks}
    print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}, threads: {torch.get_num_threads()}, "
          f"backbone {args.backbone}, tasks: {', '.join(tasks)}")
    per_task(encoder, tasks, Path(tempfile.mkdtemp(prefix="bench-warm-")))  # warm-up: lazy imports, caches
    # CPU time of this process (all its threads) beside wall time: on a machine shared with other
    # work, wall time mostly measures the neighbours; CPU time measures the work done here.
    wall: dict[str, list[float]] = {"one-call": [], "per-task": []}
    cpu: dict[str, list[float]] = {"one-call": [], "per-task": []}
    for repeat in range(args.repeats):
        order = (("one-call", one_call), ("per-task", per_task))
        for label, run in order if repeat % 2 == 0 else order[::-1]:  # alternate who goes first
            with tempfile.TemporaryDirectory(prefix="bench-eval-") as root:
                started, started_cpu = time.perf_counter(), time.process_time()
                run(encoder, tasks, Path(root))
                wall[label].append(time.perf_counter() - started)
                cpu[label].append(time.process_time() - started_cpu)
            print(f"  repeat {repeat + 1}: {label:8s} wall {wall[label][-1]:7.2f} s, cpu {cpu[label][-1]:7.2f} s")
    tiny = fixed_cost(encoder, 10)
    print(f"fixed cost of one per-task step (3-query task, median of 10): {tiny * 1000:.0f} ms")
    for name, times in (("wall", wall), ("cpu", cpu)):
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"median {name}: one-call {med['one-call']:.2f} s, per-task {med['per-task']:.2f} s, "
              f"per-task / one-call = {med['per-task'] / med['one-call']:.3f}")


if __name__ == "__main__":
    main()
