"""What the model sees: token lengths of training and evaluation texts against the limits that cut them.

A text longer than `model.query_max_length` / `passage_max_length` (or `data.filter.max_length`
for the teacher) is truncated without a word; with last-token pooling the pooled token then sits
in the middle of the text. This module counts, with each variant's own tokenizer, the median, p95
and share of texts cut per training source (query and passage side, and the teacher's view when a
filter is set) and per evaluation task (query and corpus side, sampled for large tasks), and turns
more than `WARN_SHARE` cut into one warning that names the source or task and the limit that
keeps 95 %. The counts also feed the compute estimates (harness/estimates.py).
"""

from __future__ import annotations

import math
import random
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.hashing import content_hash
from harness.report.formatting import table_rows

if TYPE_CHECKING:
    from harness.config import ModelConfig, VariantConfig
    from harness.data.rows import TrainRow

WARN_SHARE = 0.05  # more than this share of a side's texts cut: warn
SAMPLE = 2000  # texts measured per source / task side (a seeded sample of larger ones)


def tokenizer_spec(spec: str) -> str:
    """The backbone whose tokenizer a spec uses; a `variant:` reference (trained or not) keeps the
    tokenizer of the backbone it was trained from."""
    from harness.refsyntax import is_reference, resolver_for

    seen = set()
    while is_reference(spec) and spec not in seen:
        seen.add(spec)
        spec = resolver_for(spec).backbone_of(spec)
    return spec


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer alone (no weights), loaded once per process (harness.backbones.tokenizer_cache)."""
    from harness.backbones import resolve_path
    from harness.backbones.tokenizer_cache import load_tokenizer_from

    with _transformers_errors_only():
        return load_tokenizer_from(resolve_path(tokenizer_spec(spec)), trust_remote_code=trust_remote_code)


@contextmanager
def _transformers_errors_only() -> Iterator[None]:
    """transformers logs errors only inside the block ("sequence longer than the model max" is what we
    measure here), then its verbosity is what it was: a later training or eval still warns."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


# Counts already measured, per tokenizer object (weakly held: a dropped tokenizer takes its counts
# with it, and a new object at the same address never sees them) and per exact list of texts.
_COUNTS: weakref.WeakKeyDictionary[Any, dict[str, list[int]]] = weakref.WeakKeyDictionary()


def token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens per text as the model gets them (special tokens included), untruncated.

    Memoised per (tokenizer, texts): a recipe's variants mostly read the same sources and tasks,
    and tokenising them again for every variant was most of the cost of measuring lengths."""
    key = content_hash(list(texts), length=64)
    try:
        memo = _COUNTS.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced or hashed: measured every time
        memo = {}
    if key not in memo:
        counts: list[int] = []
        with _transformers_errors_only():
            for start in range(0, len(texts), 512):
                batch = tokenizer(list(texts[start:start + 512]), add_special_tokens=True, truncation=False)
                counts.extend(len(ids) for ids in batch["input_ids"])
        memo[key] = counts
    return list(memo[key])


def _percentile(sorted_counts: list[int], q: float) -> int:
    if not sorted_counts:
        return 0
    return sorted_counts[min(len(sorted_counts) - 1, max(0, math.ceil(q * len(sorted_counts)) - 1))]


def summarize(counts: Sequence[int], limit: int, population: int | None = None) -> dict[str, Any]:
    """median, p95, max, share above `limit`; `texts` = the measured sample, `population` = all of them."""
    ordered = sorted(counts)
    cut = sum(1 for c in ordered if c > limit)
    return {"texts": len(ordered), "population": population if population is not None else len(ordered),
            "limit": limit, "median": _percentile(ordered, 0.5), "p95": _percentile(ordered, 0.95),
            "max": ordered[-1] if ordered else 0, "mean": (sum(ordered) / len(ordered)) if ordered else 0.0,
            "mean_seen": (sum(min(c, limit) for c in ordered) / len(ordered)) if ordered else 0.0,  # after the cut
            "cut_share": cut / len(ordered) if ordered else 0.0}


def _sample(texts: list[str], key: str, size: int = SAMPLE) -> list[str]:
    if len(texts) <= size:
        return texts
    return random.Random(key).sample(texts, size)


# ----------------------------------------------------------------------------- training


def _query_text(row: TrainRow, model: ModelConfig) -> str:
    from harness.model import format_query

    return format_query(row.query, row.instruction if model.instructions else None, model.instruction_template)


def _reservoir(rows: Iterable[TrainRow]) -> tuple[dict[str, list[TrainRow]], dict[str, int], dict[str, int]]:
    """Per source: a seeded uniform sample of at most SAMPLE rows, the row count and the passage
    count, in one streaming pass (a large training table is never held in memory)."""
    samples: dict[str, list[TrainRow]] = {}
    counts: dict[str, int] = {}
    passages: dict[str, int] = {}
    rng = random.Random(0)
    for row in rows:
        source = row.source or "default"
        n = counts.get(source, 0)
        counts[source] = n + 1
        passages[source] = passages.get(source, 0) + len(row.pos) + len(row.neg)
        kept = samples.setdefault(source, [])
        if n < SAMPLE:
            kept.append(row)
        else:
            j = rng.randrange(n + 1)
            if j < SAMPLE:
                kept[j] = row
    return samples, counts, passages


def training_lengths(config: VariantConfig, rows: Iterable[TrainRow]) -> dict[str, Any]:
    """Per source: query / passage lengths against the model's limits, and (with a filter) queries
    and positives against `filter.max_length` in the teacher's tokenizer. Rows = what training reads."""
    samples, counts, passage_counts = _reservoir(rows)
    model = config.model
    tokenizer = load_tokenizer(model.backbone, model.trust_remote_code)
    out: dict[str, Any] = {}
    for source, picked in sorted(samples.items()):
        queries = [_query_text(r, model) for r in picked]
        passages = [p for r in picked for p in (*r.pos, *r.neg)]
        entry = {"rows": counts[source], "passages_per_row": passage_counts[source] / counts[source],
                 "query": summarize(token_counts(tokenizer, queries), model.query_max_length, counts[source]),
                 "passage": summarize(token_counts(tokenizer, passages), model.passage_max_length,
                                      passage_counts[source])}
        if config.data.filter is not None:
            teacher = load_tokenizer(config.data.filter.teacher)
            texts = [r.query for r in picked] + [r.pos[0] for r in picked if r.pos]
            entry["filter"] = summarize(token_counts(teacher, texts), config.data.filter.max_length)
        out[source] = entry
    return out


def source_rows_preview(config: VariantConfig, memo: dict[str, Any] | None = None
                        ) -> tuple[list[TrainRow], str, dict[str, str]]:
    """Rows to measure before a run: the cached mix when it exists, else up to `SAMPLE` rows read
    from each active source (cheap; the dry-run never builds the mix). A source that cannot be read
    here (a Hub dataset offline) is reported by name, not raised: a dry-run still shows the rest,
    and a real run stops on it where the data stage reads it.

    `memo` (one per `plan_lengths` call) keeps each source's rows by its name and full settings, so
    variants that share a source read it once; the rows are shared, read-only."""
    memo = {} if memo is None else memo
    from harness.data.mix import iter_source, mix_dir
    from harness.data.table import RowTable
    from harness.errors import HarnessError

    table = mix_dir(config.data) / "rows.arrow"
    if table.is_file():
        return list(RowTable(table)), "the cached mix", {}
    rows: list[TrainRow] = []
    unread: dict[str, str] = {}
    for name, source in sorted(config.data.sources.items()):
        if source.weight <= 0:
            continue
        key = content_hash([name, source.model_dump(mode="json")])
        if key not in memo:
            read: list[TrainRow] = []
            problem = None
            try:
                for i, row in enumerate(iter_source(name, source)):
                    if i >= SAMPLE:
                        break
                    row.source = row.source or name
                    read.append(row)
            except HarnessError as exc:  # the rows read before it still count, as before
                problem = f"not measured: {exc}"
            memo[key] = (read, problem)
        read, problem = memo[key]
        rows += read
        if problem is not None:
            unread[name] = problem
    return rows, f"up to {SAMPLE} rows read from each source (the mix is not built yet)", unread


# ----------------------------------------------------------------------------- evaluation


def _split_items(task: Any) -> Iterable[Any]:
    splits = list(task.metadata.eval_splits)
    data = task.dataset
    if any(s in data for s in splits):  # monolingual: split level at the top
        yield from (data[s] for s in splits if s in data)
        return
    wanted = set(getattr(task, "hf_subsets", None) or data)  # eval.languages keeps only some subsets
    for name, subset in data.items():
        if name in wanted:
            yield from (subset[s] for s in splits if s in subset)


def _column(dataset: Any, names: Sequence[str]) -> list[str]:
    columns = getattr(dataset, "column_names", None) or []
    out: list[str] = []
    for name in names:
        if name in columns:
            values = dataset[name]
            out += [v for v in values if isinstance(v, str)]
            out += [x for v in values if isinstance(v, list) for x in v if isinstance(x, str)]
    return out


def task_texts(task: Any, model: ModelConfig) -> dict[str, list[str]]:
    """The texts mteb will encode for `task`, per side: `query` (with the instruction the encoder
    prepends) and `corpus` (documents, or both sides of a symmetric task)."""
    from mteb.types import PromptType

    from harness.evaluate.encoder import kalm_instruction
    from harness.model import format_query

    loaded = task.data_loaded
    if not loaded:
        task.load_data()
    try:
        queries: list[str] = []
        corpus: list[str] = []
        for item in _split_items(task):
            if isinstance(item, dict) and "queries" in item and "corpus" in item:
                queries += _column(item["queries"], ["text"])
                titles = item["corpus"]["title"] if "title" in (item["corpus"].column_names or []) else None
                texts = item["corpus"]["text"]
                corpus += [f"{t} {x}".strip() if t else x for t, x in zip(titles or [None] * len(texts), texts,
                                                                             strict=True)]
            else:
                corpus += _column(item, ["sentence1", "sentence2", "text", "sentences"])
    finally:
        if not loaded:
            task.unload_data()
    instruction = kalm_instruction(task.metadata, PromptType.query) if model.instructions else None
    if instruction:
        queries = [format_query(q, instruction, model.instruction_template) for q in queries]
    return {"query": queries, "corpus": corpus}


def eval_lengths(model: ModelConfig, tasks: dict[str, Any]) -> dict[str, Any]:
    """Per task and side: lengths against query_max_length (queries) / passage_max_length (the rest)."""
    tokenizer = load_tokenizer(model.backbone, model.trust_remote_code)
    out: dict[str, Any] = {}
    for name, task in tasks.items():
        try:
            texts = task_texts(task, model)
        except Exception as exc:  # noqa: BLE001 - a Hub task offline is "not measured", not a failure
            out[name] = {"error": f"not measured: {type(exc).__name__}: {str(exc)[:120]}"}
            continue
        entry = {}
        for side, limit in (("query", model.query_max_length), ("corpus", model.passage_max_length)):
            if texts[side]:
                sample = _sample(texts[side], f"{name}/{side}")
                entry[side] = summarize(token_counts(tokenizer, sample), limit, len(texts[side]))
        out[name] = entry
    return out


# ----------------------------------------------------------------------------- reporting

LIMIT_KEYS = {"query": "model.query_max_length", "passage": "model.passage_max_length",
              "corpus": "model.passage_max_length", "filter": "data.filter.max_length"}


def warnings(lengths: dict[str, Any], pooling: str) -> list[str]:
    """One line per source or task with more than WARN_SHARE of a side's texts cut, naming each
    such side, its limit and the limit that keeps 95 % of the texts."""
    out = []
    for kind in ("training", "eval"):
        for name, entry in (lengths.get(kind) or {}).items():
            cut = [(side, stats) for side, stats in entry.items()
                   if isinstance(stats, dict) and stats.get("cut_share", 0) > WARN_SHARE]
            if not cut:
                continue
            what = f"training source {name}" if kind == "training" else f"eval task {name}"
            parts = [f"{100 * stats['cut_share']:.0f}% of {side} texts longer than {LIMIT_KEYS[side]} "
                     f"{stats['limit']} (median {stats['median']}, p95 {stats['p95']}: {stats['p95']} keeps 95%)"
                     for side, stats in cut]
            line = f"{what}: texts are cut: {'; '.join(parts)}"
            if pooling == "last_token" and any(side != "filter" for side, _ in cut):
                line += "; with last_token pooling a cut text is pooled on a token from its middle"
            out.append(line)
    return out


def lengths_text(lengths: dict[str, Any], indent: str = "    ", rows: list[list[Any]] | None = None) -> str:
    """A fixed-width table for terminals (dry-run, data build); `rows` = a subset of table_rows."""
    header = ["", "source / task", "side", "limit", "median", "p95", "cut", "measured"]
    rows = [[str(c) for c in r] for r in (table_rows(lengths) if rows is None else rows)]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


# ----------------------------------------------------------------------------- runs

_EVAL_MEMO: dict[str, dict[str, Any]] = {}  # eval lengths per (model config, task), once per process


def eval_lengths_memo(model: ModelConfig, tasks: dict[str, Any]) -> dict[str, Any]:
    """eval_lengths, measured once per (model settings, task) in this process (runs share tasks)."""
    from harness.hashing import content_hash

    out = {}
    for name, task in tasks.items():
        key = content_hash({"model": model.model_dump(mode="json"), "task": name})
        if key not in _EVAL_MEMO:
            _EVAL_MEMO[key] = eval_lengths(model, {name: task})[name]
        out[name] = _EVAL_MEMO[key]
    return out


def run_lengths(config: VariantConfig, rows: Iterable[TrainRow], tasks: dict[str, Any]) -> dict[str, Any]:
    """A run's lengths.json: the training rows it read and the tasks it evaluated, with warnings."""
    lengths: dict[str, Any] = {"tokenizer": tokenizer_spec(config.model.backbone),
                               "training": training_lengths(config, rows),
                               "eval": eval_lengths_memo(config.model, tasks)}
    lengths["warnings"] = warnings(lengths, config.model.pooling)
    return lengths


@dataclass
class PlanGroup:
    """Variants that share model, data and tasks: measured once."""

    names: list[str]
    config: VariantConfig
    tasks: list[str]
    lengths: dict[str, Any]
    where: str
    rows: int
    negatives_per_row: float


def plan_lengths(configs: dict[str, tuple[VariantConfig, list[str]]], tasks: dict[str, Any]) -> list[PlanGroup]:
    """Lengths for each distinct (model, data, tasks) among a recipe's variants."""
    from harness.hashing import content_hash

    groups: dict[str, PlanGroup] = {}
    previews: dict[str, Any] = {}  # each source read once for all groups (source_rows_preview)
    for name, (config, task_names) in configs.items():
        key = content_hash({"model": config.model.model_dump(mode="json"),
                            "data": config.data.model_dump(mode="json"), "tasks": sorted(task_names)})
        if key in groups:
            groups[key].names.append(name)
            continue
        rows, where, unread = source_rows_preview(config, previews)
        lengths = {"training": {**training_lengths(config, rows), **{n: {"error": e} for n, e in unread.items()}},
                   "eval": eval_lengths_memo(config.model, {t: tasks[t] for t in task_names})}
        cap = config.data.hard_negatives
        negatives = (float(cap) if config.data.filter is not None else
                     sum(min(len(r.neg), cap) for r in rows) / len(rows) if rows else 0.0)
        total = config.data.total_rows or len(rows)
        groups[key] = PlanGroup([name], config, task_names, lengths, where, total, negatives)
    return list(groups.values())


def plan_lengths_text(groups: list[PlanGroup]) -> str:
    """The dry-run's table: for the first variant in full, then for each variant whose model, data or
    tasks differ only the rows and warnings that differ from the ones already shown."""
    lines = ["", "what the model sees (tokens per text with each variant's tokenizer; cut = longer than the limit):"]
    shown_rows: set[str] = set()
    shown_warnings: set[str] = set()
    for group in groups:
        lengths, config = group.lengths, group.config
        new_rows = [r for r in table_rows(lengths) if repr(r) not in shown_rows]
        new_warnings = [w for w in warnings(lengths, config.model.pooling) if w not in shown_warnings]
        same = " (only what differs from above)" if shown_rows else ""
        lines.append(f"  {', '.join(group.names)}: tokenizer {tokenizer_spec(config.model.backbone)}; training "
                     f"texts from {group.where}{same}")
        if new_rows:
            lines.append(lengths_text(lengths, rows=new_rows))
        elif shown_rows:
            lines.append("    same lengths as above")
        lines += [f"  warning: {w}" for w in new_warnings]
        shown_rows.update(repr(r) for r in table_rows(lengths))
        shown_warnings.update(new_warnings)
    return "\n".join(lines)
