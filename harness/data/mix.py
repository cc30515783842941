"""Build a variant's training table from its data mix, with a data card that counts every step.

Sources are read in full (train split only), then sampled deterministically per source by
`(data.seed, source name)`: a source's sample does not change when another source's weight
does. Nothing is dropped without being counted in the card.
"""

from __future__ import annotations

import random
from typing import Any

from harness.config import DataConfig, SourceConfig
from harness.data.rows import RowProblems, TrainRow, read_flag_jsonl
from harness.errors import HarnessError
from harness.hashing import content_hash
from harness.instructions import SOURCE_INSTRUCTIONS


def read_source(name: str, source: SourceConfig, problems: RowProblems | None = None) -> list[TrainRow]:
    """All train-split rows of one source, in a deterministic order."""
    problems = problems or RowProblems(source.on_error)
    instruction = source.instruction if source.instruction is not None else SOURCE_INSTRUCTIONS.get(str(source.kind))
    rows: list[TrainRow]
    if source.kind == "stdlib-code":
        from harness.data.offline.stdlib_code import stdlib_code_pairs

        rows = [TrainRow(query=p.query, pos=[p.code], task="stdlib-code", instruction=instruction, source=name)
                for p in stdlib_code_pairs("train")]
    elif source.kind == "cldr-bitext":
        from harness.data.offline.cldr_bitext import DEFAULT_LANGS, cldr_bitext

        langs = source.langs or list(DEFAULT_LANGS)
        rows = [TrainRow(query=p.english, pos=[p.other], task=f"cldr-bitext:{lang}", instruction=instruction,
                         source=name)
                for lang, pairs in cldr_bitext("train", langs).items() for p in pairs]
    elif source.kind in ("febrl-tuples", "table-columns"):
        from harness.data.offline import tables

        data = tables.febrl_tuple_matching("train") if source.kind == "febrl-tuples" \
            else tables.valentine_column_matching("train")
        rows = tables.to_train_rows(data, source=name)
    elif source.kind == "synth":
        assert source.synth is not None
        from harness.data.synth_stage import synthesize_source

        rows = read_flag_jsonl(synthesize_source(source.synth), source=name, problems=problems)
    elif source.kind == "flag-jsonl":
        assert source.path is not None
        rows = read_flag_jsonl(source.path, source=name, problems=problems)
    elif source.kind == "parquet":
        from harness.data.readers import read_parquet

        assert source.path is not None
        rows = read_parquet(source.path, source=name, problems=problems)
    elif source.kind == "hf-dataset":
        from harness.data.readers import read_hf_dataset

        assert source.dataset is not None
        rows = read_hf_dataset(source.dataset, subset=source.subset, split=source.split, source=name,
                               problems=problems)
    else:
        raise HarnessError(f"data.sources.{name}: unknown kind {source.kind!r}")
    for row in rows:
        row.instruction = row.instruction or instruction
        if source.task:
            row.task = source.task
    return rows


def _quotas(config: DataConfig, available: dict[str, int]) -> dict[str, int]:
    active = {n: s for n, s in config.sources.items() if s.weight > 0}
    caps = {n: min(available[n], s.max_rows or available[n]) for n, s in active.items()}
    if config.total_rows is None:
        return caps
    total_weight = sum(s.weight for s in active.values())
    return {n: min(caps[n], round(config.total_rows * s.weight / total_weight)) for n, s in active.items()}


def build_mix(config: DataConfig) -> tuple[list[TrainRow], dict[str, Any]]:
    """Return the training rows and the data card for one data config."""
    if not config.sources:
        raise HarnessError("data.sources is empty: name at least one training source")
    problems = {name: RowProblems(src.on_error) for name, src in config.sources.items()}
    available: dict[str, list[TrainRow]] = {
        name: read_source(name, src, problems[name]) for name, src in config.sources.items() if src.weight > 0
    }
    quotas = _quotas(config, {n: len(r) for n, r in available.items()})
    card_sources: dict[str, Any] = {}
    rows: list[TrainRow] = []
    seen: set[tuple[str, str]] = set()
    for name in sorted(available):
        pool = available[name]
        rng = random.Random(f"{config.seed}:{name}")
        picked = rng.sample(range(len(pool)), quotas[name])
        duplicates = 0
        negatives_trimmed = 0
        taken: list[TrainRow] = []
        for i in sorted(picked):
            row = pool[i]
            key = (row.query, row.pos[0])
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            if len(row.neg) > config.hard_negatives:
                negatives_trimmed += len(row.neg) - config.hard_negatives
                row.neg = row.neg[: config.hard_negatives]
            taken.append(row)
        rows.extend(taken)
        tasks: dict[str, int] = {}
        for row in taken:
            tasks[row.task] = tasks.get(row.task, 0) + 1
        source_cfg = config.sources[name]
        card_sources[name] = {
            "kind": source_cfg.kind,
            "weight": source_cfg.weight,
            "max_rows": source_cfg.max_rows,
            "rows_available": len(pool),
            "rows_sampled": quotas[name],
            "duplicates_removed": duplicates,
            "rows_kept": len(taken),
            "hard_negatives_trimmed": negatives_trimmed,
            "rows_per_task": dict(sorted(tasks.items())),
            **problems[name].card(),
        }
        if source_cfg.kind == "synth" and source_cfg.synth is not None:
            from harness.data.synth_stage import synth_card

            card_sources[name]["synth"] = synth_card(source_cfg.synth)
    dropped = sorted(n for n, s in config.sources.items() if s.weight == 0)
    card = {
        "rows": len(rows),
        "sources": card_sources,
        "sources_with_weight_0": dropped,
        "tasks": len({r.task for r in rows}),
        "rows_with_hard_negatives": sum(1 for r in rows if r.neg),
        "hard_negatives_per_row": (sum(len(r.neg) for r in rows) / len(rows)) if rows else 0.0,
        "rows_with_instruction": sum(1 for r in rows if r.instruction),
        "content_hash": content_hash([r.to_json() for r in rows]),
    }
    if not rows:
        raise HarnessError("the data mix is empty after sampling: check weights, max_rows and total_rows")
    if config.filter is not None:
        rows, card["filter"] = filter_rows(rows, config)
        card["rows_after_filter"] = len(rows)
        card["rows_with_hard_negatives"] = sum(1 for r in rows if r.neg)
        card["hard_negatives_per_row"] = sum(len(r.neg) for r in rows) / len(rows) if rows else 0.0
        card["content_hash"] = content_hash([r.to_json() for r in rows])
        if not rows:
            raise HarnessError("data.filter dropped every row: raise data.filter.top_k or use null")
    return rows, card


def filter_rows(rows: list[TrainRow], config: DataConfig) -> tuple[list[TrainRow], dict[str, Any]]:
    """Ranking-consistency filter + hard-negative mining; the teacher pass is cached on disk, so
    arms that differ only in the threshold share it (the teacher loads only on a cache miss)."""
    from harness.config import ModelConfig
    from harness.data.filtering import apply_filter, cached_teacher_pass
    from harness.data.mining import rule_from_config
    from harness.paths import cache_root

    from harness.backbones.fingerprint import backbone_identity
    from harness.devices import resolve_device, resolve_precision

    spec = config.filter
    assert spec is not None
    teacher_config = ModelConfig(backbone=spec.teacher, pooling=spec.teacher_pooling, instructions=False,
                                 query_max_length=spec.max_length, passage_max_length=spec.max_length)
    device = resolve_device(spec.device)
    precision = resolve_precision(spec.bf16, device)
    teacher: list[Any] = []

    def embed(texts: list[str], side: str) -> Any:
        if not teacher:
            from harness.model import Embedder

            teacher.append(Embedder.from_config(teacher_config).to(device))
        return teacher[0].encode(texts, max_length=spec.max_length, batch_size=64, bf16=precision.bf16)

    # The teacher's weights (a folder is keyed by its contents) and the precision it ran in.
    teacher_id = content_hash({"teacher": backbone_identity(spec.teacher), "pooling": spec.teacher_pooling,
                               "max_length": spec.max_length, "precision": precision.name})
    ranking = cached_teacher_pass(rows, embed, teacher_id, cache_root(), depth=spec.depth)
    kept, report = apply_filter(rows, ranking, top_k=spec.top_k, negatives=config.hard_negatives,
                                seed=config.seed, rule=rule_from_config(spec))
    report["teacher"] = {"spec": spec.teacher, "id": teacher_id, "ranking": ranking.key, "precision": precision.name,
                         "teacher_pass": ranking.stats.get("cache")}
    return kept, report
