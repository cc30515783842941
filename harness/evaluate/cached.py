"""Evaluate only the (model, task) pairs whose eval stage is not cached yet, committing each task
as soon as it finishes: a job killed during task k of n keeps tasks 1..k-1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from harness import atomic
from harness.stages import Stage, compute_once, sweep_stale

from harness.run_record import MACHINE_FILE  # the machine that computed the stage's scores (harness.machine)


def run_cached_eval(make_encoder: Callable[[], Any], tasks: dict[str, Any], stages: dict[str, Stage],
                    log: Callable[[str], None], *, show_progress: bool = True) -> None:
    """`make_encoder` is called once, and only when some task is missing (loading a model is not free)."""
    missing = [t for t, s in stages.items() if not s.done()]
    for t in stages:
        if t not in missing:
            log(f"  eval   {stages[t].hash}  {t} cached")
            sweep_stale(stages[t])
    if not missing:
        return
    from harness.evaluate.benchmarks import require_hub_data
    from harness.evaluate.resolve import is_local
    from harness.evaluate.run import MODEL_META, MTEB_RESULT, evaluate_task
    from harness.machine import machine_of

    for t in missing:  # an unreachable Hub fails here, in seconds, before any lock or encoding
        if not is_local(tasks[t]):
            require_hub_data(tasks[t])
    encoder: Any = None
    bar = tqdm(missing, desc="eval tasks", unit="task", disable=not show_progress)
    for t in bar:
        bar.set_postfix_str(t)
        evaluation: list[Any] = []

        def build(tmp: Path, task: str = t) -> None:
            nonlocal encoder
            if encoder is None:  # loaded once, and only if some task really is computed here
                encoder = make_encoder()
            done = evaluate_task(encoder, tasks[task])
            atomic.write_json(tmp / "scores.json", done.scores)
            atomic.write_parquet(tmp / "units.parquet", done.units)
            atomic.write_text(tmp / MTEB_RESULT, done.mteb_result)
            atomic.write_text(tmp / MODEL_META, done.model_meta)
            atomic.write_json(tmp / MACHINE_FILE, machine_of(getattr(getattr(encoder, "model", None), "device", "cpu")))
            evaluation.append(done)

        # One lock per task: this task is committed before the next starts, and another process
        # evaluating the same model waits for it, then finds it cached and moves to the next.
        if not compute_once(stages[t], build):
            log(f"  eval   {stages[t].hash}  {t} cached")
            continue
        scores = evaluation[0].scores
        log(f"  eval   {stages[t].hash}  {t}: {scores['main_metric']} = {scores['main_score']:.4f}")


def publish_mteb_results(stages: dict[str, Stage], folder: Path) -> None:
    """Copy each eval stage's mteb TaskResult JSON to `folder/<Task>.json`, plus one model_meta.json:
    mteb's own results layout for one model revision, read by `harness export mteb`."""
    from harness.evaluate.run import MODEL_META, MTEB_RESULT

    keep = {MODEL_META}
    for task, stage in stages.items():
        atomic.write_bytes(folder / f"{task}.json", (stage.dir / MTEB_RESULT).read_bytes())
        keep.add(f"{task}.json")
    if stages:
        atomic.write_bytes(folder / MODEL_META, (next(iter(stages.values())).dir / MODEL_META).read_bytes())
    for stale in folder.glob("*.json"):  # a task dropped from the recipe since the last publish
        if stale.name not in keep:
            stale.unlink()
