"""Build a variant's training table from its data mix, with a data card that counts every step.

Streaming, in bounded memory: each source is read once (its reader yields rows) into a spool
table on disk while it is counted; then, source by source in name order, the sampled rows are
de-duplicated by 64-bit hashes of (query, first positive), their negatives trimmed, counted for
the card and appended to the training table (Arrow, see `harness.data.table`). Memory holds one
record batch, the sample of one source (as indices) and 8 bytes per kept row for de-duplication.

Sampling is per source, deterministic by `(data.seed, source name)`: a source's sample does not
change when another source's weight does. Nothing is dropped without being counted in the card.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.config import DataConfig, SourceConfig
from harness.inputs import data_key, unchanged_while
from harness.data.rows import RowProblems, TrainRow, iter_flag_jsonl
from harness.data.table import TABLE_FILE, RowTable, TableWriter
from harness.data.teacher import RowsDigest
from harness.errors import HarnessError
from harness.hashing import canonical_json, content_hash
from harness.instructions import SOURCE_INSTRUCTIONS

if TYPE_CHECKING:
    from harness.data.filtering import FilterCut

SPOOL_DIR = ".spool"
CUT_DIR = ".cut"
# bump when the mix table format changes. 2: sources keyed by content (harness.inputs); the card
# carries the rows' fingerprint (the teacher pass's key), so the filter never hashes the table again
MIX_VERSION = 2


def iter_source(name: str, source: SourceConfig, problems: RowProblems | None = None) -> Iterator[TrainRow]:
    """All train-split rows of one source, streamed in a deterministic order."""
    problems = problems or RowProblems(source.on_error)
    instruction = source.instruction if source.instruction is not None else SOURCE_INSTRUCTIONS.get(str(source.kind))
    for row in _source_rows(name, source, instruction, problems):
        row.instruction = row.instruction or instruction
        if source.task:
            row.task = source.task
        yield row


def _source_rows(name: str, source: SourceConfig, instruction: str | None,
                 problems: RowProblems) -> Iterator[TrainRow]:
    if source.kind == "stdlib-code":
        from harness.data.offline.stdlib_code import stdlib_code_pairs

        for p in stdlib_code_pairs("train"):
            yield TrainRow(query=p.query, pos=[p.code], task="stdlib-code", instruction=instruction, source=name)
    elif source.kind == "cldr-bitext":
        from harness.data.offline.cldr_bitext import DEFAULT_LANGS, cldr_bitext

        langs = source.langs or list(DEFAULT_LANGS)
        for lang, pairs in cldr_bitext("train", langs).items():
            for p in pairs:
                yield TrainRow(query=p.english, pos=[p.other], task=f"cldr-bitext:{lang}", instruction=instruction,
                               source=name)
    elif source.kind in ("febrl-tuples", "table-columns"):
        from harness.data.offline.febrl import febrl_tuple_matching
        from harness.data.offline.table_matching import to_train_rows
        from harness.data.offline.valentine import valentine_column_matching

        data = febrl_tuple_matching("train") if source.kind == "febrl-tuples" else valentine_column_matching("train")
        yield from to_train_rows(data, source=name)
    elif source.kind == "febrl-pairs":
        from harness.data.offline.febrl import febrl_link_pairs

        for record, linked in febrl_link_pairs("train"):
            yield TrainRow(query=record, pos=[linked], task="febrl-pairs", instruction=instruction, source=name)
    elif source.kind == "synth":
        assert source.synth is not None
        from harness.data.synth_stage import synthesize_source

        yield from iter_flag_jsonl(synthesize_source(source.synth), source=name, problems=problems)
    elif source.kind == "flag-jsonl":
        assert source.path is not None
        yield from iter_flag_jsonl(source.path, source=name, problems=problems)
    elif source.kind == "parquet":
        from harness.data.readers import iter_parquet

        assert source.path is not None
        yield from iter_parquet(source.path, source=name, problems=problems)
    elif source.kind == "hf-dataset":
        from harness.data.readers import iter_hf_dataset

        assert source.dataset is not None
        revision = None
        if not Path(source.dataset).expanduser().exists():  # a Hub id: read the commit the key names
            from harness.hub import resolve_commit

            revision = resolve_commit(source.dataset, "dataset", source.revision)
        yield from iter_hf_dataset(source.dataset, subset=source.subset, split=source.split, source=name,
                                   problems=problems, revision=revision)
    else:
        raise HarnessError(f"data.sources.{name}: unknown kind {source.kind!r}")


def read_source(name: str, source: SourceConfig, problems: RowProblems | None = None) -> list[TrainRow]:
    """All train-split rows of one source as a list (small sources and tests)."""
    return list(iter_source(name, source, problems))


def _quotas(config: DataConfig, available: dict[str, int]) -> dict[str, int]:
    active = {n: s for n, s in config.sources.items() if s.weight > 0}
    caps = {n: min(available[n], s.max_rows or available[n]) for n, s in active.items()}
    if config.total_rows is None:
        return caps
    total_weight = sum(s.weight for s in active.values())
    return {n: min(caps[n], round(config.total_rows * s.weight / total_weight)) for n, s in active.items()}


def dedup_key(query: str, positive: str) -> int:
    """64-bit key of (query, first positive): blake2b, length-prefixed so no two pairs share an input.

    8 bytes per row instead of the two strings; two different pairs collide with probability
    ~n^2 / 2^65 (about 3e-8 for a million rows), which would drop one row.
    """
    q = query.encode("utf-8")
    digest = hashlib.blake2b(len(q).to_bytes(8, "little") + q + positive.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SeenKeys:
    """A set of 64-bit keys in ~8 bytes each: a sorted numpy array plus a small set of recent keys."""

    RECENT = 1 << 16

    def __init__(self) -> None:
        self._sorted = np.zeros(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def add_new(self, keys: list[int]) -> list[bool]:
        """For each key in order: True if unseen (it is recorded), False if seen before (or earlier in `keys`)."""
        if not keys:
            return []
        arr = np.asarray(keys, dtype=np.uint64)
        if len(self._sorted):
            pos = np.minimum(np.searchsorted(self._sorted, arr), len(self._sorted) - 1)
            old = self._sorted[pos] == arr
        else:
            old = np.zeros(len(keys), dtype=bool)
        out = []
        for key, was in zip(keys, old.tolist(), strict=True):
            fresh = not was and key not in self._recent
            if fresh:
                self._recent.add(key)
            out.append(fresh)
        if len(self._recent) >= self.RECENT:
            self._sorted = np.union1d(self._sorted, np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent)))
            self._recent = set()
        return out


class CardCounts:
    """The card's whole-table counts, accumulated row by row (content hash included)."""

    def __init__(self, *, rows_fingerprint: bool = False) -> None:
        self.rows = 0
        self.tasks: set[str] = set()
        self.with_negatives = 0
        self.negatives = 0
        self.with_instruction = 0
        self._hash = hashlib.sha256(b"[")
        self.rows_digest = RowsDigest() if rows_fingerprint else None  # the mix's: the teacher pass's key

    def add(self, row: TrainRow) -> None:
        # == content_hash([r.to_json() for r in rows]): the canonical JSON of the list, streamed.
        if self.rows:
            self._hash.update(b",")
        self._hash.update(canonical_json(row.to_json()).encode("utf-8"))
        if self.rows_digest is not None:
            self.rows_digest.add(row)
        self.rows += 1
        self.tasks.add(row.task)
        self.with_negatives += bool(row.neg)
        self.negatives += len(row.neg)
        self.with_instruction += bool(row.instruction)

    def content_hash(self) -> str:
        from harness.hashing import HASH_LEN

        digest = self._hash.copy()
        digest.update(b"]")
        return digest.hexdigest()[:HASH_LEN]


def _progress(show: bool, desc: str, total: int | None = None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", disable=not show, mininterval=1.0)


def build_table(config: DataConfig, out_dir: str | Path, *, show_progress: bool = True) -> dict[str, Any]:
    """Write the training table `out_dir/rows.arrow` for one data config; return the data card.

    `out_dir` is a staging folder (the data stage renames it into place when this returns). With a
    filter, the unfiltered mix is its own cached artifact (`mix_dir`), which the teacher's shards
    read and which every filter setting over the same mix shares. The teacher pass and the cut read
    the mix one task at a time, and the kept rows stream from it through the cut into the writer
    (memory follows the largest task, not the table: `harness.data.filtering`). A source file that
    changes meanwhile stops the build (`harness.inputs.unchanged_while`), so no stage is committed
    for bytes its key does not name.
    """
    if not config.sources:
        raise HarnessError("data.sources is empty: name at least one training source")
    with unchanged_while(config, "data stage"):
        return _build_table(config, Path(out_dir), show_progress)


def _build_table(config: DataConfig, out_dir: Path, show_progress: bool) -> dict[str, Any]:
    if config.filter is None:
        card = _write_mix(config, out_dir / TABLE_FILE, out_dir / SPOOL_DIR, show_progress)
        card.pop("rows_fingerprint")
        return card
    mixed = ensure_mix(config, show_progress=show_progress)
    card = json.loads((mixed / "card.json").read_text(encoding="utf-8"))
    table = RowTable(mixed / TABLE_FILE)
    scratch = out_dir / CUT_DIR  # the cut's negatives, memory-mapped until the kept rows are written
    try:
        cut, card["filter"] = filter_rows(table, config, show_progress=show_progress,
                                          fingerprint=card.pop("rows_fingerprint", None), scratch=scratch)
        after = CardCounts()
        with TableWriter(out_dir / TABLE_FILE) as writer, _progress(show_progress, "write kept rows", cut.kept) as bar:
            for row in cut.rows(table):
                writer.add(row)
                after.add(row)
                bar.update()
        del cut
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    card["rows_after_filter"] = after.rows
    card["rows_with_hard_negatives"] = after.with_negatives
    card["hard_negatives_per_row"] = after.negatives / after.rows if after.rows else 0.0
    card["content_hash"] = after.content_hash()
    if not after.rows:
        raise HarnessError("data.filter dropped every row: raise data.filter.top_k or use null")
    return card


def mix_dir(config: DataConfig) -> Path:
    """Cache folder of the unfiltered mix of a data config (its key leaves the filter out)."""
    from harness.paths import cache_root

    key = content_hash({"v": MIX_VERSION, "data": data_key(config, with_filter=False)})
    return cache_root() / "mix" / key


def ensure_mix(config: DataConfig, *, show_progress: bool = True) -> Path:
    """The unfiltered mix (rows.arrow + card.json), built once and cached; returns its folder."""
    from harness import atomic
    from harness.locks import build_once

    folder = mix_dir(config)

    def build(tmp: Path) -> None:
        with unchanged_while(config, "mix"):
            card = _write_mix(config, tmp / TABLE_FILE, tmp / SPOOL_DIR, show_progress)
        atomic.write_json(tmp / "card.json", card)

    build_once(folder, build, what=f"mix {folder.name}")  # once across processes (shards, concurrent runs)
    return folder


def _write_mix(config: DataConfig, table_path: Path, spool: Path, show_progress: bool) -> dict[str, Any]:
    if not config.sources:
        raise HarnessError("data.sources is empty: name at least one training source")
    spool.mkdir(parents=True, exist_ok=True)
    try:
        return _mix(config, table_path, spool, show_progress)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _mix(config: DataConfig, table_path: Path, spool: Path, show_progress: bool) -> dict[str, Any]:
    problems = {name: RowProblems(src.on_error) for name, src in config.sources.items()}
    active = sorted(name for name, src in config.sources.items() if src.weight > 0)
    available: dict[str, int] = {}
    for i, name in enumerate(active):  # pass 1: read and count each source once
        with TableWriter(spool / f"source-{i}.arrow") as writer, _progress(show_progress, f"read {name}") as bar:
            for row in iter_source(name, config.sources[name], problems[name]):
                writer.add(row)
                bar.update()
        available[name] = writer.rows
    quotas = _quotas(config, available)

    counts = CardCounts(rows_fingerprint=True)
    seen = SeenKeys()
    card_sources: dict[str, Any] = {}
    with TableWriter(table_path) as writer:
        for i, name in enumerate(active):  # pass 2: sample, de-duplicate, trim, write, count
            source_cfg = config.sources[name]
            picked = _picked(config.seed, name, available[name], quotas[name])
            duplicates = negatives_trimmed = kept = 0
            tasks: dict[str, int] = {}
            table = RowTable(spool / f"source-{i}.arrow")
            start = 0
            with _progress(show_progress, f"mix {name}", available[name]) as bar:
                for batch in table.iter_batches():
                    chosen = [row for j, row in enumerate(batch, start) if picked is None or picked[j]]
                    start += len(batch)
                    bar.update(len(batch))
                    fresh = seen.add_new([dedup_key(row.query, row.pos[0]) for row in chosen])
                    for row, is_new in zip(chosen, fresh, strict=True):
                        if not is_new:
                            duplicates += 1
                            continue
                        if len(row.neg) > config.hard_negatives:
                            negatives_trimmed += len(row.neg) - config.hard_negatives
                            row.neg = row.neg[: config.hard_negatives]
                        writer.add(row)
                        counts.add(row)
                        kept += 1
                        tasks[row.task] = tasks.get(row.task, 0) + 1
            del table
            (spool / f"source-{i}.arrow").unlink()
            card_sources[name] = {
                "kind": source_cfg.kind,
                "weight": source_cfg.weight,
                "max_rows": source_cfg.max_rows,
                "rows_available": available[name],
                "rows_sampled": quotas[name],
                "duplicates_removed": duplicates,
                "rows_kept": kept,
                "hard_negatives_trimmed": negatives_trimmed,
                "rows_per_task": dict(sorted(tasks.items())),
                **problems[name].card(),
            }
            if source_cfg.kind == "synth" and source_cfg.synth is not None:
                from harness.data.synth_stage import synth_card

                card_sources[name]["synth"] = synth_card(source_cfg.synth)
    if not counts.rows:
        raise HarnessError("the data mix is empty after sampling: check weights, max_rows and total_rows")
    return {
        "rows": counts.rows,
        "sources": card_sources,
        "sources_with_weight_0": sorted(n for n, s in config.sources.items() if s.weight == 0),
        "tasks": len(counts.tasks),
        "rows_with_hard_negatives": counts.with_negatives,
        "hard_negatives_per_row": (counts.negatives / counts.rows) if counts.rows else 0.0,
        "rows_with_instruction": counts.with_instruction,
        "content_hash": counts.content_hash(),
        "rows_fingerprint": counts.rows_digest.hexdigest(),  # type: ignore[union-attr]  # the mix card only
    }


def _picked(seed: int, name: str, available: int, quota: int) -> np.ndarray | None:
    """Which rows of a source are sampled (a bool mask), or None for all of them.

    Same draw as ever: `random.Random(f"{seed}:{name}").sample(range(available), quota)`, rows
    kept in source order. Taking every row needs no draw (the sorted sample is every index).
    """
    if quota >= available:
        return None
    mask = np.zeros(available, dtype=bool)
    mask[random.Random(f"{seed}:{name}").sample(range(available), quota)] = True
    return mask


def build_mix(config: DataConfig, *, show_progress: bool = False) -> tuple[list[TrainRow], dict[str, Any]]:
    """The training rows (as a list) and the data card for one data config: small mixes and tests.

    The data stage itself writes the table with `build_table` and never holds the rows.
    """
    from harness.atomic import scratch_dir

    with scratch_dir("harness-mix") as tmp:  # under the cache, cleaned even after a kill
        card = build_table(config, tmp, show_progress=show_progress)
        rows = list(RowTable(tmp / TABLE_FILE))
    return rows, card


def teacher_precision(config: DataConfig) -> str:
    """The precision the filter's teacher encodes in on this machine (`bf16: auto` resolves per device)."""
    from harness.devices import resolve_compute

    assert config.filter is not None
    return resolve_compute(config.filter.device, config.filter.bf16).precision.name


def teacher_embed(config: DataConfig) -> tuple[Any, str]:
    """The filter's teacher as an embed function (loaded on first call) and its id (the cache key)."""
    from harness.backbones.fingerprint import backbone_identity
    from harness.config import ModelConfig
    from harness.devices import resolve_compute

    spec = config.filter
    assert spec is not None
    teacher_config = ModelConfig(backbone=spec.teacher, pooling=spec.teacher_pooling, instructions=False,
                                 query_max_length=spec.max_length, passage_max_length=spec.max_length)
    compute = resolve_compute(spec.device, spec.bf16)
    device, precision = compute.device, compute.precision
    teacher: list[Any] = []

    def embed(texts: list[str], side: str) -> Any:
        if not teacher:
            from harness.model import Embedder

            teacher.append(Embedder.from_config(teacher_config).to(device))
        return teacher[0].encode(texts, max_length=spec.max_length, batch_size=64, bf16=precision.bf16)

    from harness.machine import machine_of

    embed.machine = machine_of(device)  # type: ignore[attr-defined]  # recorded with the ranking it encodes
    # The teacher's weights (a folder is keyed by its contents) and the precision it ran in.
    teacher_id = content_hash({"teacher": backbone_identity(spec.teacher), "pooling": spec.teacher_pooling,
                               "max_length": spec.max_length, "precision": precision.name})
    return embed, teacher_id


def encode_shard(config: DataConfig, shard: int, n_shards: int, *, show_progress: bool = True) -> dict[str, Any]:
    """Shard `shard` of `n_shards` of this config's teacher pass (the mix is built first if needed)."""
    from harness.data.filtering import encode_teacher_shard
    from harness.paths import cache_root

    embed, teacher_id = teacher_embed(config)
    mixed = ensure_mix(config, show_progress=show_progress)
    fingerprint = json.loads((mixed / "card.json").read_text(encoding="utf-8")).get("rows_fingerprint")
    return encode_teacher_shard(RowTable(mixed / TABLE_FILE), embed, teacher_id, cache_root(), shard, n_shards,
                                show_progress=show_progress, fingerprint=fingerprint)


def filter_rows(rows: Sequence[TrainRow], config: DataConfig, *, show_progress: bool = True,
                fingerprint: str | None = None, scratch: Path | None = None) -> tuple[FilterCut, dict[str, Any]]:
    """Ranking-consistency filter + hard-negative mining; the teacher pass is cached on disk, so
    arms that differ only in the threshold share it (the teacher loads only on a cache miss).

    Returns the cut (`FilterCut.rows(rows)` streams the kept rows) and the card's report; the rows
    are hashed at most once, and not at all when `fingerprint` (the mix card's) is given. `scratch`:
    a folder for the cut's negatives (see `cut_rows`), removed by the caller after writing the rows.
    """
    from harness.data.filtering import cached_teacher_pass, cut_rows, rows_fingerprint
    from harness.data.mining import rule_from_config
    from harness.paths import cache_root

    spec = config.filter
    assert spec is not None
    embed, teacher_id = teacher_embed(config)
    fingerprint = fingerprint or rows_fingerprint(rows)
    ranking = cached_teacher_pass(rows, embed, teacher_id, cache_root(), depth=spec.depth,
                                  show_progress=show_progress, fingerprint=fingerprint)
    cut, report = cut_rows(rows, ranking, top_k=spec.top_k, negatives=config.hard_negatives,
                           seed=config.seed, rule=rule_from_config(spec), fingerprint=fingerprint, scratch=scratch)
    report["teacher"] = {"spec": spec.teacher, "id": teacher_id, "ranking": ranking.key,
                         "precision": teacher_precision(config), "teacher_pass": ranking.stats.get("cache"),
                         "machine": ranking.stats.get("machine")}  # None: encoded by shards or before it was recorded
    return cut, report
