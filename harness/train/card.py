"""The training card: the README.md a train stage writes into its `model/` folder.

A train stage cannot know eval scores, so this card holds the front matter (library_name,
base_model, language, tags, Hub datasets) and a body with the variant's config, the data card
(sources, weights, rows, filter teacher and threshold, mining rule, synthetic generator and
personas) and the training settings and precision. `harness export model` (harness/export/card.py)
builds the full card from these pieces plus the scores. Both load with `huggingface_hub.ModelCard`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from harness import atomic
from harness.text_table import markdown_table

CARD_FILE = "README.md"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
EMBEDDED_BASES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}
# Languages of the harness's built-in source kinds besides English (cldr-bitext adds its `langs`).
ENGLISH_KINDS = {"stdlib-code", "febrl-tuples", "table-columns"}


def base_model(backbone: str) -> str | None:
    """The Hub id a backbone spec stands for (None: a local folder, tiny-qwen2 or a trained variant)."""
    from harness.refsyntax import is_reference

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


def front_matter(config: dict[str, Any], model_name: str, eval_results: list[Any] | None = None) -> str:
    """YAML front matter; `eval_results` (huggingface_hub EvalResults) become the model-index."""
    from huggingface_hub import ModelCardData

    model = config.get("model") or {}
    data = ModelCardData(
        library_name="sentence-transformers", base_model=base_model(str(model.get("backbone", ""))),
        language=languages(config) or None, datasets=hub_datasets(config) or None,
        tags=["sentence-transformers", "sentence-similarity", "feature-extraction", "harness", "mteb"],
        pipeline_tag="sentence-similarity", model_name=model_name,
        eval_results=eval_results or None)
    return data.to_yaml().rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- body


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
             markdown_table(rows, ["source", "kind", "weight", "rows available", "rows kept", "from"],
                            parse_numbers=True), ""]
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
                  markdown_table(crow, ["task", "eval texts", "exact overlaps", "near-duplicate eval texts",
                                        "share of eval touched"], parse_numbers=True), ""]
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
    return f"---\n{front_matter(config, name)}---\n\n" + "\n".join(body)


def write_training_card(model_dir: Path, config: Any, data_dir: Path, summary: dict[str, Any]) -> None:
    """The README.md of a freshly trained model/ folder."""
    card_path = data_dir / "card.json"
    data_card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    name = f"harness-{content_name(config)}"
    atomic.write_text(model_dir / CARD_FILE, training_card(config.to_dict(), data_card, summary, name))


def content_name(config: Any) -> str:
    from harness.stages import train_stage

    return f"train-{train_stage(config).hash}"
