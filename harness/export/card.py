"""The full model card of `harness export model`: the training card's pieces (harness/train/card.py)
plus the recipe, the variant's overrides (and command-line ones), contamination findings, the
token-length summary, and the scores as `model-index` entries in the form mteb's create-meta writes
(`TaskResult.get_hf_eval_results`: one entry per task, split and subset, main score as stored) with
a table of scores, Δ and 95 % CI against the control. It loads with `huggingface_hub.ModelCard.load`;
the folder still loads with SentenceTransformer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness import atomic
from harness.errors import HarnessError
from harness.text_table import markdown_table
from harness.train.card import CARD_FILE, config_markdown, data_markdown, front_matter, training_markdown, usage_markdown


def eval_results(scores: dict[str, Any]) -> list[Any]:
    """huggingface_hub EvalResults as mteb's `TaskResult.get_hf_eval_results` builds them."""
    from huggingface_hub import EvalResult

    from harness.export.mteb import _task

    out = []
    for name, entry in sorted((scores.get("tasks") or {}).items()):
        meta = _task(name).metadata
        for key, metrics in sorted(entry["subsets"].items()):
            split, subset = key.split("/", 1) if "/" in key else (meta.eval_splits[0], key)
            out.append(EvalResult(
                task_type=meta._hf_task_type()[0], task_name=meta.type, dataset_type=meta.dataset["path"],
                dataset_name=f"{meta.name} ({subset})", dataset_config=subset, dataset_split=split,
                dataset_revision=str(meta.dataset["revision"]), metric_type=meta.main_score,
                metric_name=meta.main_score, metric_value=metrics["main_score"], source_name="MTEB",
                source_url="https://github.com/embeddings-benchmark/mteb/"))
    return out


def _comparisons(recipe_dir: Path, variant: str) -> dict[str, Any]:
    """Per task: (control, variant, Δ, CI low, CI high, p Holm) against the control, all seeds."""
    from harness.paths import CONTROL_NAME
    from harness.report.significance import compare_recipe, load_recipe

    if variant == CONTROL_NAME or not (recipe_dir / CONTROL_NAME).is_dir():
        return {}
    comparisons, _ = compare_recipe(load_recipe(recipe_dir))
    return {c.task: c for c in comparisons if c.variant == variant}


def scores_markdown(scores: dict[str, Any], recipe_dir: Path, variant: str) -> list[str]:
    try:
        compared = _comparisons(recipe_dir, variant)
    except (HarnessError, OSError, ValueError, KeyError):
        compared = {}
    rows = []
    for task, entry in sorted((scores.get("tasks") or {}).items()):
        c = compared.get(task)
        rows.append([task, entry.get("main_metric"), f"{100 * entry['main_score']:.2f}",
                     *([c.unit_metric, f"{100 * c.value:.2f}", f"{100 * c.control:.2f}", f"{100 * c.delta:+.2f}",
                        f"[{100 * c.ci_low:+.2f}, {100 * c.ci_high:+.2f}]", f"{c.p_holm:.3g}"] if c else
                       ["–", "–", "–", "–", "–", "–"])])
    note = ("Variant, control, Δ, CI and p (Holm) are on the paired per-unit metric (per query / sentence; it "
            "can differ from the main score, e.g. bitext hit rate vs F1), this variant against the recipe's "
            "control `base` over all seeds, as in the harness report." if compared else
            "This is the control (or no control results are present): no comparison.")
    return ["## Evaluation", "", f"Main scores x100 of this run (seed {scores.get('seed')}). {note}", "",
            markdown_table(rows, ["task", "main metric", "this run", "unit metric", "variant", "control", "Δ",
                                  "95% CI", "p (Holm)"], parse_numbers=True), ""]


def full_card(seed_dir: Path) -> str:
    """README.md for an exported run: results/<recipe>/<variant>/seed-N/ and its variant config."""
    from harness.report.formatting import table_rows
    from harness.overrides import overrides_text

    def read(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HarnessError(f"{path}: missing; expected a results/<recipe>/<variant>/seed-N folder") from None

    variant_file = seed_dir.parent / "config.yaml"
    if not variant_file.is_file():
        raise HarnessError(f"{variant_file}: missing; expected a results/<recipe>/<variant>/seed-N folder")
    variant = yaml.safe_load(variant_file.read_text(encoding="utf-8"))
    scores, run = read(seed_dir / "scores.json"), read(seed_dir / "run.json")
    config = variant["config"]
    config["train"]["seed"] = scores.get("seed", config["train"].get("seed"))  # this run's seed
    data_card = read(seed_dir / "data_card.json")
    summary = read(seed_dir / "train_summary.json")
    name = str(scores["model_name"])
    overrides = variant.get("overrides") or {}
    body = [f"# {name}", "",
            f"A text-embedding model trained by the harness: recipe `{variant['recipe']}`, variant "
            f"`{variant['variant']}` (hash {variant['variant_hash']}), seed {scores.get('seed')}; train stage "
            f"{run['stages']['train']}.", "",
            "Variant overrides of the recipe's base: "
            + (", ".join(f"`{k}={v}`" for k, v in overrides.items()) or "none (the control)") + ".", ""]
    if run.get("overrides"):
        body += [f"Command-line overrides of the base: `{overrides_text(run['overrides'])}`.", ""]
    body += data_markdown(data_card, config) + training_markdown(config, summary)
    body += scores_markdown(scores, seed_dir.parent.parent, str(variant["variant"]))
    lengths_path = seed_dir / "lengths.json"
    if lengths_path.is_file():
        lengths = json.loads(lengths_path.read_text(encoding="utf-8"))
        body += ["## What the model sees (tokens per text)", "",
                 markdown_table(table_rows(lengths), ["", "source / task", "side", "limit", "median", "p95", "cut",
                                                      "measured"], parse_numbers=True),
                 "", *(f"- warning: {w}" for w in lengths.get("warnings", [])), ""]
    versions = run.get("versions") or {}
    body += [f"Software: {', '.join(f'{k} {v}' for k, v in sorted(versions.items()))}.", ""]
    body += usage_markdown(config) + config_markdown(config)
    return f"---\n{front_matter(config, name, eval_results(scores))}---\n\n" + "\n".join(body)


def export_model(seed_dir: Path, out: Path) -> Path:
    """Copy a run's checkpoint to `out` and write its full card there; returns the card's path."""
    import shutil

    run_file = seed_dir / "run.json"
    if not run_file.is_file():
        raise HarnessError(f"{run_file}: missing; `export model` takes a results/<recipe>/<variant>/seed-N folder")
    from harness.paths import cache_root

    # run.json records the checkpoint relative to the cache root (older runs: an absolute path)
    checkpoint = cache_root() / json.loads(run_file.read_text(encoding="utf-8"))["checkpoint"]
    if not (checkpoint / "config.json").is_file():
        raise HarnessError(f"{seed_dir}: its checkpoint {checkpoint} is not in this cache ($HARNESS_CACHE); re-run "
                           f"the recipe's ablate command to train it again")
    text = full_card(seed_dir)  # before copying: a bad results folder writes nothing
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"{out}: exists and is not empty; choose a new folder")
    shutil.copytree(checkpoint, out, dirs_exist_ok=True)
    atomic.write_text(out / CARD_FILE, text)
    return out / CARD_FILE
