"""`harness eval MODEL`: score any model (embedded name, Hub id, local folder, or mteb's random
encoder) on tasks or benchmarks, as a baseline row in results/baselines/ and the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness import atomic
from harness.config import EvalConfig, ModelConfig
from harness.hashing import content_hash
from harness.stages import Stage, eval_task_stage, precisions_to_try

RANDOM_BASELINE = "mteb/baseline-random-encoder"
RANDOM_ALIASES = {"random", "baseline-random", "baseline-random-encoder", RANDOM_BASELINE}
BASELINES = "baselines"


def model_identity(spec: str, model: ModelConfig) -> dict[str, Any]:
    """What decides a baseline's embeddings: the spec, its settings, and for a folder its contents."""
    from harness.backbones.fingerprint import backbone_identity

    return {"spec": spec, "model": model.model_dump(mode="json"), "backbone": backbone_identity(spec)}


def slug(spec: str) -> str:
    """The results folder name of a model spec: safe by construction (no `..`, no separators)."""
    from harness.paths import NAME_MAX, safe_component

    name = safe_component(spec.strip("/").replace("/", "__").replace(" ", "_")) if spec.strip("/") else "model"
    return name if len(name) <= NAME_MAX else f"{name[:NAME_MAX - 13]}-{content_hash(spec)}"


def baseline_identity(spec: str, model: ModelConfig) -> dict[str, Any]:
    """The random encoder by its mteb name; any other model by model_identity."""
    return {"spec": RANDOM_BASELINE} if spec in RANDOM_ALIASES else model_identity(spec, model)


def baseline_stages(model_hash: str, eval_config: EvalConfig,
                    tasks: dict[str, Any] | None = None) -> dict[str, Stage]:
    """The eval stage of each task for the baseline `model_hash` (content_hash of baseline_identity),
    keyed like a variant's (stages.eval_task_stage) in this machine's precision, resolved by the same
    rule as an ablate's eval stages."""
    from harness.evaluate.resolve import eval_revision, resolve_tasks

    tasks = resolve_tasks(eval_config) if tasks is None else tasks
    precision = precisions_to_try(eval_config.bf16, eval_config.device)[0]
    return {name: eval_task_stage(("baseline", model_hash), name, eval_revision(task), precision)
            for name, task in tasks.items()}


def evaluate_baseline(spec: str, model: ModelConfig, eval_config: EvalConfig, results_root: Path, *,
                      log: Any = print, show_progress: bool = True) -> Path:
    from harness.evaluate.cached import publish_mteb_results, run_cached_eval
    from harness.evaluate.resolve import resolve_tasks
    from harness.run_record import stage_machine

    is_random = spec in RANDOM_ALIASES
    identity = baseline_identity(spec, model)
    model_hash = content_hash(identity)
    tasks = resolve_tasks(eval_config)
    stages = baseline_stages(model_hash, eval_config, tasks)

    def make_encoder() -> Any:
        if is_random:
            import mteb

            return mteb.get_model(RANDOM_BASELINE)
        from harness.evaluate.encoder import build_encoder
        from harness.model import Embedder

        return build_encoder(Embedder.from_config(model), eval_config, name=f"harness-baseline/{slug(spec)}",
                             revision=model_hash, show_progress=show_progress, log=log)

    run_cached_eval(make_encoder, tasks, stages, log, show_progress=show_progress)
    name = "random-encoder" if is_random else slug(spec)
    out = results_root / BASELINES / name
    atomic.write_text(out / "config.yaml", yaml.safe_dump({
        "baseline": spec, "model_hash": model_hash, "model": identity.get("model"),
        "eval": eval_config.model_dump(mode="json"),
        "machine": {t: stage_machine(s) for t, s in stages.items()}}, sort_keys=True, allow_unicode=True))
    import pandas as pd

    scores = {t: json.loads((s.dir / "scores.json").read_text(encoding="utf-8")) for t, s in stages.items()}
    atomic.write_json(out / "seed-0" / "scores.json", {"model_name": spec, "seed": 0, "tasks": scores})
    frames = [pd.read_parquet(s.dir / "units.parquet") for s in stages.values()]
    atomic.write_parquet(out / "seed-0" / "units.parquet", pd.concat(frames, ignore_index=True))
    publish_mteb_results(stages, out / "seed-0" / "mteb")
    return out
