"""`harness export mteb RESULTS_DIR --out DIR`: every (variant, seed) in mteb's results layout,
`DIR/results/<model name>/<revision>/<Task>.json` + `model_meta.json`, which `mteb.ResultCache(DIR)`
loads like any published model's results.

Each run's own mteb files are copied verbatim when the run kept them (`seed-N/mteb/`, written since
eval stage version 2). Older results hold only `scores.json`: their TaskResult JSON is rebuilt from
it (main score and the kept metrics per subset; splits and languages from the task's metadata) and
says so in the export log. Model name = the run's mteb name (`harness-<recipe>/<variant>-seed<N>`),
revision = its train-stage hash, exactly what the encoder reported to mteb.

The harness's own tasks are not in mteb's task registry (docs: reference mteb2.md, pitfall 3), so
anything in mteb that calls `mteb.get_task(name)` — `TaskResult.task`, Mean(TaskType),
`BenchmarkResults.get_aggregated_scores`, `load_results(validate_and_filter=True)` with task *names* —
raises KeyError for them; loading, `to_dataframe`, `Benchmark.get_score` with Mean(Task) and the Borda
rank work. `benchmark_for` builds such a Benchmark.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from harness import atomic
from harness.errors import HarnessError
from harness.evaluate.run import MODEL_META

MTEB_FOLDER = "mteb"  # inside results/<recipe>/<variant>/seed-N/


@dataclass(frozen=True)
class Exported:
    """One (variant, seed) written in mteb's layout."""

    source: Path  # the seed-N folder it came from
    model_name: str
    revision: str
    tasks: tuple[str, ...]
    verbatim: bool  # mteb's own JSON copied (True) or rebuilt from scores.json (False)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: missing (expected next to {path.parent / 'scores.json'})") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _identity(seed_dir: Path, scores: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(mteb model name, revision, ModelMeta fields) of a run whose mteb files were not kept."""
    from harness.evaluate.baseline import RANDOM_ALIASES, RANDOM_BASELINE, slug

    config_path = seed_dir.parent / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if (seed_dir / "run.json").is_file():  # a recipe's run: name and revision as pipeline.RunPlan gave mteb
        revision = _read_json(seed_dir / "run.json")["stages"]["train"]
        model = (config.get("config") or {}).get("model") or {}
        return str(scores["model_name"]), str(revision), model
    if "baseline" in config:  # results/baselines/<model>/, written by `harness eval`
        spec = str(config["baseline"])
        if spec in RANDOM_ALIASES:
            return RANDOM_BASELINE, "", {}
        return f"harness-baseline/{slug(spec)}", str(config["model_hash"]), config.get("model") or {}
    raise HarnessError(f"{seed_dir}: neither run.json (a recipe's run) nor a baseline config.yaml next to "
                       f"scores.json; cannot tell which model these scores belong to")


def _model_meta(name: str, revision: str, model: dict[str, Any]) -> str:
    """A ModelMeta for a run whose own model_meta.json was not kept (size and dimension unknown)."""
    import mteb
    from mteb.models.model_meta import ModelMeta

    from harness.evaluate.baseline import RANDOM_BASELINE

    if name == RANDOM_BASELINE:
        meta = mteb.get_model_meta(RANDOM_BASELINE)  # mteb's own registry entry: no download
    else:
        meta = ModelMeta(
            loader=None, name=name, revision=revision, release_date=None, languages=None, n_parameters=None,
            memory_usage_mb=None, max_tokens=model.get("passage_max_length"), embed_dim=None, license=None,
            open_weights=True, public_training_code=None, public_training_data=None, framework=["PyTorch"],
            similarity_fn_name="cosine", use_instructions=model.get("instructions"), training_datasets=None,
        )
    return json.dumps(meta.to_dict(), default=str, indent=4)


@cache  # one build per task name, not one per exported run
def _task(name: str) -> Any:
    """The task object, for its splits and languages: a harness task or mteb's (metadata only)."""
    from harness.evaluate.benchmarks import get_mteb_task
    from harness.evaluate.tasks import REGISTRY, get_task

    return get_task(name) if name in REGISTRY else get_mteb_task(name)


def _task_result_json(task_name: str, entry: dict[str, Any], mteb_version: str | None) -> str:
    """mteb's TaskResult JSON rebuilt from one task of scores.json, written by mteb's own `to_disk`."""
    from mteb.results import TaskResult

    try:
        meta = _task(task_name).metadata
    except HarnessError as exc:
        raise HarnessError(f"cannot rebuild mteb's JSON for {task_name}: {exc}") from None
    langs = meta.hf_subsets_to_langscripts
    by_split: dict[str, list[dict[str, Any]]] = {}
    for key, metrics in entry["subsets"].items():
        split, subset = key.split("/", 1) if "/" in key else (meta.eval_splits[0], key)
        by_split.setdefault(split, []).append({**metrics, "hf_subset": subset, "languages": langs.get(subset, [])})
    result = TaskResult(dataset_revision=str(entry["revision"]), task_name=task_name, mteb_version=mteb_version,
                        scores=by_split, evaluation_time=None)
    with tempfile.TemporaryDirectory(prefix="harness-export-") as tmp:
        path = Path(tmp) / f"{task_name}.json"
        result.to_disk(path)
        return path.read_text(encoding="utf-8")


def export_run(seed_dir: Path, out: Path) -> Exported:
    """Write one results/<...>/seed-N/ folder into `out` in mteb's layout."""
    import mteb

    scores = _read_json(seed_dir / "scores.json")
    tasks = sorted(scores.get("tasks") or {})
    kept = seed_dir / MTEB_FOLDER
    verbatim = (kept / MODEL_META).is_file() and all((kept / f"{t}.json").is_file() for t in tasks)
    if verbatim:
        meta_text = (kept / MODEL_META).read_text(encoding="utf-8")
        meta = json.loads(meta_text)
        name, revision = str(meta["name"]), str(meta["revision"])
        files = {f"{t}.json": (kept / f"{t}.json").read_text(encoding="utf-8") for t in tasks}
    else:
        name, revision, model = _identity(seed_dir, scores)
        meta_text = _model_meta(name, revision, model)
        revision = revision or str(json.loads(meta_text)["revision"])
        run = seed_dir / "run.json"
        version = _read_json(run).get("versions", {}).get("mteb") if run.is_file() else None
        try:
            files = {f"{t}.json": _task_result_json(t, scores["tasks"][t], version) for t in tasks}
        except HarnessError as exc:
            raise HarnessError(f"{seed_dir}: {exc}") from None
    # mteb decides where a model's results go (name with "/" -> "__", revision folder)
    folder = mteb.ResultCache(out).get_task_result_path("x", model_name=name, model_revision=revision).parent
    for file_name, text in files.items():
        atomic.write_text(folder / file_name, text)
    atomic.write_text(folder / MODEL_META, meta_text)
    return Exported(seed_dir, name, revision, tuple(tasks), verbatim)


def export_results(results_dir: Path, out: Path, *, log: Any = print) -> list[Exported]:
    """Every `seed-N/scores.json` under `results_dir` (a results root, a recipe or a variant folder)."""
    if not results_dir.is_dir():
        raise HarnessError(f"{results_dir}: no such results folder (expected results/ or results/<recipe>)")
    runs = sorted(p.parent for p in results_dir.rglob("seed-*/scores.json"))
    if not runs:
        raise HarnessError(f"{results_dir}: no <variant>/seed-N/scores.json below it; nothing to export")
    done = []
    for seed_dir in runs:
        item = export_run(seed_dir, out)
        how = "mteb's own JSON" if item.verbatim else "rebuilt from scores.json"
        log(f"  {item.model_name} @ {item.revision}: {len(item.tasks)} task(s), {how}  <- {seed_dir}")
        done.append(item)
    return done


def benchmark_for(task_names: list[str], name: str = "harness", languages: list[str] | None = None) -> Any:
    """An mteb Benchmark over these tasks, for `Benchmark.get_score` on exported results. With any
    harness task in it, only Mean(Task) (plus mteb's always-on Borda rank): Mean(TaskType) looks the
    task up in mteb's registry, where harness tasks are not. `languages`: the recipe's
    `eval.languages`, so mteb expects exactly the subsets the runs evaluated."""
    import mteb
    from mteb.benchmarks.benchmark import BenchmarkAggregation

    from harness.evaluate.resolve import is_local, restrict_languages

    tasks = [_task(t) for t in task_names]
    for task in tasks:
        if not restrict_languages(task, languages):
            raise HarnessError(f"{task.metadata.name} has no subset in languages {languages}")
    if any(is_local(t) for t in tasks):
        return mteb.Benchmark(name=name, tasks=tasks, aggregations=(BenchmarkAggregation.MEAN_TASK,))
    return mteb.Benchmark(name=name, tasks=tasks)
