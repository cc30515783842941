"""Evaluate only the (model, task) pairs whose eval stage is not cached yet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import atomic, locks
from harness.stages import Stage


def run_cached_eval(make_encoder: Callable[[], Any], tasks: dict[str, Any], stages: dict[str, Stage],
                    log: Callable[[str], None]) -> None:
    """`make_encoder` is called only when some task is missing (loading a model is not free)."""
    missing = [t for t, s in stages.items() if not s.done()]
    for t in stages:
        if t not in missing:
            log(f"  eval   {stages[t].hash}  {t} cached")
    if not missing:
        return
    from harness.evaluate.benchmarks import require_hub_data
    from harness.evaluate.resolve import is_local
    from harness.evaluate.run import evaluate

    for t in missing:  # an unreachable Hub fails here, in seconds, before any lock or encoding
        if not is_local(tasks[t]):
            require_hub_data(tasks[t])
    # Hold every missing task's lock: another process evaluating the same model waits, then
    # finds those tasks cached (locks are taken in a fixed order, so two holders never deadlock).
    with locks.locked(*(stages[t].dir for t in missing), what=f"eval stages of {len(missing)} task(s)"):
        for t in [t for t in missing if stages[t].done()]:
            log(f"  eval   {stages[t].hash}  {t} cached")
        missing = [t for t in missing if not stages[t].done()]
        if not missing:
            return
        scores, units = evaluate(make_encoder(), [tasks[t] for t in missing])
        for t in missing:
            atomic.remove_stale_staging(stages[t].dir, legacy=True)
            with atomic.staged_dir(stages[t].dir) as tmp:
                atomic.write_json(tmp / "scores.json", scores[t])
                task_units = units[units["task"] == t].reset_index(drop=True) if not units.empty else units
                atomic.write_parquet(tmp / "units.parquet", task_units)
            log(f"  eval   {stages[t].hash}  {t}: {scores[t]['main_metric']} = {scores[t]['main_score']:.4f}")
