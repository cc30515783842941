"""Model cards: the README.md of every exported model folder, with the data that made the model.

Two moments, two cards (the train stage cannot know eval scores):
- the train stage writes a *training card* into its `model/` folder: front matter (library_name,
  base_model, language, tags, Hub datasets) and a body with the variant's config, the data card
  (sources, weights, rows, filter teacher and threshold, mining rule, synthetic generator and
  personas) and the training settings and precision;
- `harness export model` writes the *full card* from a results folder: the same plus the recipe,
  the variant's overrides (and command-line ones), contamination findings, the token-length
  summary, and the scores as `model-index` entries in the form mteb's create-meta writes
  (`TaskResult.get_hf_eval_results`: one entry per task, split and subset, main score as stored)
  with a table of scores, Δ and 95 % CI against the control.

Both load with `huggingface_hub.ModelCard.load`; the folder still loads with SentenceTransformer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from harness import atomic
from harness.errors import HarnessError

CARD_FILE = "README.md"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
EMBEDDED_BASES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}
# Languages of the harness's built-in source kinds besides English (cldr-bitext adds its `langs`).
ENGLISH_KINDS = {"stdlib-code", "febrl-tuples", "table-columns"}


def base_model(backbone: str) -> str | None:
    """The Hub id a backbone spec stands for (None: a local folder, tiny-qwen2 or a trained variant)."""
    from harness.references import is_reference

    if backbone in EMBEDDED_BASES:
        return EMBEDDED_BASES[backbone]
    if is_reference(backbone) or Path(backbone).expanduser().exists() or not HUB_ID.match(backbone):
        return None
    return backbone


def hub_datasets(config: dict[str, Any]) -> list[str]:
    """Training datasets that are Hub ids (hf-dataset sources; synthetic personas datasets)."""
    out: list[str] = []
    for source in (config.get("data") or {}).get("sources", {}).values():
        if source.get("weight", 1.0) <= 0:
            continue
        for spec in (source.get("dataset"), (source.get("synth") or {}).get("personas")):
            if spec and HUB_ID.match(str(spec)) and not Path(str(spec)).expanduser().exists() and spec not in out:
                out.append(str(spec))
    return out


def languages(config: dict[str, Any]) -> list[str]:
    """Training languages as ISO codes: English for the built-in English kinds and cldr-bitext's langs."""
    langs: list[str] = []
    for name, source in (config.get("data") or {}).get("sources", {}).items():
        if source.get("weight", 1.0) <= 0:
            continue
        kind = source.get("kind") or name
        if kind in ENGLISH_KINDS | {"cldr-bitext"}:
            langs.append("en")
        if kind == "cldr-bitext":
            langs += list(source.get("langs") or [])
    return sorted(set(langs))


# ----------------------------------------------------------------------------- front matter


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


def front_matter(config: dict[str, Any], model_name: str, scores: dict[str, Any] | None) -> str:
    from huggingface_hub import ModelCardData

    model = config.get("model") or {}
    data = ModelCardData(
        library_name="sentence-transformers", base_model=base_model(str(model.get("backbone", ""))),
        language=languages(config) or None, datasets=hub_datasets(config) or None,
        tags=["sentence-transformers", "sentence-similarity", "feature-extraction", "harness", "mteb"],
        pipeline_tag="sentence-similarity", model_name=model_name,
        eval_results=eval_results(scores) if scores else None)
    return data.to_yaml().rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- body


def _md(rows: list[list[Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github")


def data_markdown(card: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The data card as prose and tables: sources, filter, mining, synthesis, contamination."""
    sources_cfg = (config.get("data") or {}).get("sources", {})
    rows = []
    for name, s in sorted((card.get("sources") or {}).items()):
        where = sources_cfg.get(name, {}).get("dataset") or sources_cfg.get(name, {}).get("path") or "built in"
        rows.append([name, s.get("kind"), s.get("weight"), s.get("rows_available"), s.get("rows_kept"), where])
    lines = ["## Training data", "",
             f"{card.get('rows')} rows in the mix"
             + (f", {card['rows_after_filter']} after the ranking-consistency filter" if card.get("rows_after_filter")
                is not None else "")
             + f"; {card.get('hard_negatives_per_row', 0):g} hard negatives per row; "
               f"{card.get('tasks')} task(s).", "",
             _md(rows, ["source", "kind", "weight", "rows available", "rows kept", "from"]), ""]
    dropped = [n for n in card.get("sources_with_weight_0") or []]
    if dropped:
        lines += [f"Sources with weight 0 (not used): {', '.join(dropped)}.", ""]
    for name, s in sorted((card.get("sources") or {}).items()):
        synth = s.get("synth")
        if synth:
            lines += [f"Synthetic source `{name}`: generator `{synth.get('model')}` ({synth.get('backend')}), "
                      f"personas `{synth.get('personas')}`"
                      + (f" (limit {synth['personas_limit']})" if synth.get("personas_limit") else "")
                      + f", kinds {', '.join(synth.get('kinds') or [])}, seed {synth.get('seed')}.", ""]
    flt = card.get("filter")
    if flt:
        teacher = flt.get("teacher") or {}
        rule = flt.get("negatives_rule") or {}
        top_k = flt.get("top_k")
        lines += ["Ranking-consistency filter and hard-negative mining (KaLM): teacher "
                  f"`{teacher.get('spec')}` ({teacher.get('precision')}), "
                  + ("every row kept (top_k: null)" if top_k is None else
                     f"a row is kept only if the teacher ranks its positive within its top {top_k + 1}")
                  + f"; {flt.get('rows_before')} -> {flt.get('rows_after')} rows; negatives: "
                  + ", ".join(f"{k} {v}" for k, v in rule.items()) + ".", ""]
    contamination = card.get("contamination") or {}
    tasks = contamination.get("tasks") or {}
    if tasks:
        crow = [[t, v.get("eval_texts"), (v.get("exact") or {}).get("distinct", "–"),
                 (v.get("near_duplicates") or {}).get("eval_texts", "–"),
                 f"{100 * v.get('share_eval_touched', 0):.2f}%"] for t, v in sorted(tasks.items())]
        lines += ["Contamination (training texts vs each evaluation task's texts; exact after normalisation, "
                  f"near duplicates at threshold {contamination.get('threshold')}):", "",
                  _md(crow, ["task", "eval texts", "exact overlaps", "near-duplicate eval texts",
                             "share of eval touched"]), ""]
    return lines


def training_markdown(config: dict[str, Any], summary: dict[str, Any] | None) -> list[str]:
    model, train = config.get("model") or {}, config.get("train") or {}
    extras = [f"LoRA r={train['lora']['r']} alpha={train['lora']['alpha']}" if train.get("lora") else "full fine-tune"]
    if train.get("matryoshka"):
        extras.append(f"Matryoshka dims {train['matryoshka']['dims']}")
    if train.get("focal_gamma"):
        extras.append(f"focal gamma {train['focal_gamma']}")
    lines = ["## Training", "",
             f"Backbone `{model.get('backbone')}`, {model.get('pooling')} pooling, {model.get('attention')} attention, "
             f"normalize {model.get('normalize')}, instructions {model.get('instructions')}; max length query "
             f"{model.get('query_max_length')} / passage {model.get('passage_max_length')} tokens. "
             f"InfoNCE at temperature {train.get('temperature')}, lr {train.get('lr')}, batch {train.get('batch_size')}"
             f" x {train.get('gradient_accumulation', 1)} accumulation, steps {train.get('steps')}, seed "
             f"{train.get('seed')}; {', '.join(extras)}.", ""]
    if summary:
        lines += [f"Ran {summary.get('steps')} steps on {summary.get('device')} in {summary.get('precision')} "
                  f"({summary.get('precision_reason', '')}), {summary.get('train_seconds')} s, final loss "
                  f"{summary.get('final_loss')}; weights stored as {train.get('export_dtype', 'float32')}.", ""]
    return lines


def usage_markdown(config: dict[str, Any]) -> list[str]:
    prompt = ", prompt_name=\"query\"" if (config.get("model") or {}).get("instructions") else ""
    return ["## Usage", "", "```python", "from sentence_transformers import SentenceTransformer", "",
            "model = SentenceTransformer(\"path/to/this/folder\")",
            f"queries = model.encode([\"how do I parse a date?\"]{prompt})",
            "documents = model.encode([\"def parse_date(text): ...\"])", "```", ""]


def config_markdown(config: dict[str, Any]) -> list[str]:
    return ["<details><summary>Resolved config</summary>", "", "```yaml",
            yaml.safe_dump(config, sort_keys=True, allow_unicode=True).rstrip(), "```", "", "</details>", ""]


# ----------------------------------------------------------------------------- the two cards


def training_card(config: dict[str, Any], data_card: dict[str, Any] | None, summary: dict[str, Any] | None,
                  name: str) -> str:
    """README.md of a train stage's model/: everything but scores (the stage has none yet)."""
    body = [f"# {name}", "",
            "A text-embedding model trained by the harness (evaluation-first ablations of KaLM-Embedding "
            "training recipes). This is the train stage's card: scores are added by "
            "`python -m harness export model RESULTS_DIR/<recipe>/<variant>/seed-N --out DIR`.", ""]
    body += data_markdown(data_card or {}, config) + training_markdown(config, summary)
    body += usage_markdown(config) + config_markdown(config)
    return f"---\n{front_matter(config, name, None)}---\n\n" + "\n".join(body)


def write_training_card(model_dir: Path, config: Any, data_dir: Path, summary: dict[str, Any]) -> None:
    """Replace sentence-transformers' generic README.md in a freshly trained model/ folder."""
    card_path = data_dir / "card.json"
    data_card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    name = f"harness-{content_name(config)}"
    atomic.write_text(model_dir / CARD_FILE, training_card(config.to_dict(), data_card, summary, name))


def content_name(config: Any) -> str:
    from harness.stages import train_stage

    return f"train-{train_stage(config).hash}"


def _comparisons(recipe_dir: Path, variant: str) -> dict[str, Any]:
    """Per task: (control, variant, Δ, CI low, CI high, p Holm) against the control, all seeds."""
    from harness.recipe import CONTROL_NAME
    from harness.report.results import load_scores
    from harness.report.significance import compare_recipe

    if variant == CONTROL_NAME or not (recipe_dir / CONTROL_NAME).is_dir():
        return {}
    scores = load_scores(recipe_dir, recipe_level=True)
    comparisons, _ = compare_recipe(recipe_dir, scores)
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
            _md(rows, ["task", "main metric", "this run", "unit metric", "variant", "control", "Δ", "95% CI",
                       "p (Holm)"]), ""]


def full_card(seed_dir: Path) -> str:
    """README.md for an exported run: results/<recipe>/<variant>/seed-N/ and its variant config."""
    from harness.lengths import table_rows
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
                 _md(table_rows(lengths), ["", "source / task", "side", "limit", "median", "p95", "cut", "measured"]),
                 "", *(f"- warning: {w}" for w in lengths.get("warnings", [])), ""]
    versions = run.get("versions") or {}
    body += [f"Software: {', '.join(f'{k} {v}' for k, v in sorted(versions.items()))}.", ""]
    body += usage_markdown(config) + config_markdown(config)
    return f"---\n{front_matter(config, name, scores)}---\n\n" + "\n".join(body)


def export_model(seed_dir: Path, out: Path) -> Path:
    """Copy a run's checkpoint to `out` and write its full card there; returns the card's path."""
    import shutil

    run_file = seed_dir / "run.json"
    if not run_file.is_file():
        raise HarnessError(f"{run_file}: missing; `export model` takes a results/<recipe>/<variant>/seed-N folder")
    checkpoint = Path(json.loads(run_file.read_text(encoding="utf-8"))["checkpoint"])
    if not (checkpoint / "config.json").is_file():
        raise HarnessError(f"{seed_dir}: its checkpoint {checkpoint} is not in the cache any more; re-run the "
                           f"recipe's ablate command to train it again")
    text = full_card(seed_dir)  # before copying: a bad results folder writes nothing
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"{out}: exists and is not empty; choose a new folder")
    shutil.copytree(checkpoint, out, dirs_exist_ok=True)
    atomic.write_text(out / CARD_FILE, text)
    return out / CARD_FILE
