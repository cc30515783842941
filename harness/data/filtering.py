"""KaLM's ranking-consistency filtering and hard-negative mining, split around a cached teacher pass.

The teacher pass (encode every query and corpus text, exact top-`depth` inner-product search) is
the expensive part; the threshold is a cheap cut on its output. So the two are separate:

- `teacher_pass` / `cached_teacher_pass` produce a `TeacherRanking`, stored on disk under
  `cache_dir/rankings/<ranking_key>` and keyed by (teacher id, rows, depth): every filtering
  threshold of an ablation reuses one pass. A stored ranking's tasks load one at a time.
- `cut_rows` (and `apply_filter`, its list-in, list-out wrapper) cuts at `top_k`, mines hard
  negatives with a rule (harness.data.mining: KaLM's rank window, or NV-Retriever's positive-aware
  score ceilings) and returns the kept rows (`FilterCut.rows` streams them) plus a report for the
  data card. Every rule and parameter value is a cut on the same ranking.

Semantics follow KaLM's `train/hn_mine.py`, per task (rows with the same `task` label):
corpus = unique positive and negative texts (or a candidate pool, plus the positives, so every
positive has a score); a row is dropped when its best positive scores below the corpus item at
0-based rank `top_k`, so `top_k: k` keeps rows whose positive is among the teacher's top k + 1 (0 keeps
only rows whose positive ranks first); a corpus of at most `top_k` items keeps every row. Negatives:
existing ones first (up to `negatives`), topped up from teacher ranks [lo, hi) (or what another
mining rule allows), then random corpus items; never a positive, the query text or a candidate a
positive-aware rule removed. Deliberate differences from KaLM: the corpus order is first appearance
(KaLM's `list(set(...))` changes with Python's hash seed, so its output is not reproducible);
existing negatives equal to a positive / the query / an earlier negative are discarded; padding never
picks a positive; the window draw is made for every row before the cut, so a row keeps the same
negatives under every threshold (arms differ only in which rows survive); a positive that *is* the
item at rank `top_k` is kept even if float rounding puts its recomputed score a hair lower.

Task by task, so memory follows the largest task, never the table (`harness.data.teacher`): one
cheap pass over the task column finds each task's rows; then per task its rows alone are read, its
unique queries and corpus planned (texts are deduplicated within a task: a text shared by two tasks
is encoded once for each), encoded (sharded over processes into memory-mapped vector files, float16
for tables of a million texts or more, float32 below; cached by teacher + rows) and searched by a
blocked exact search (torch matmul + topk over query x corpus blocks, merged) whose order is (score,
corpus index), so ties never depend on `depth` or on the number of shards; its ranking is written to
the ranking folder (one npz + one Arrow corpus file per task) and dropped. The cut reads the ranking
back one task at a time with that task's rows, keeps only which rows survive and the corpus indices
they gain (memory-mapped in a scratch file during the data stage), and the kept rows are written by
streaming the table once more, each gained negative read by its position in its task's
memory-mapped corpus file (a few open at a time). What grows with the table: a few integer arrays
per row (task, line, gained negatives) and the mined negatives' scores for the card.

torch rather than FAISS (KaLM's choice) below FAISS_MIN_CORPUS items (FAISS from there on, when installed), by
measurement (bench/bench_filtering.py, idle 2-core CPU, 2000 queries, top-128):
torch 0.14 s / 0.60 s / 1.14 s vs FAISS `IndexFlatIP` 0.10 s / 0.44 s / 0.92 s for corpora of
10k x 384, 50k x 384, 50k x 896 dims, while search is under 0.1% of a teacher pass (encoding
dominates: 1500 rows took 28.8 s to encode and 0.02 s to search).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness import atomic
from harness.data.mining import MiningRule, relative_scores
from harness.data.rows import TrainRow
from harness.errors import HarnessError
from harness.hashing import content_hash

Side = Literal["query", "passage"]
EmbedFn = Callable[[list[str], Side], np.ndarray]

# 2: one npz + one Arrow corpus file per task, read lazily; vectors encoded per task (harness.data.teacher)
RANKING_FORMAT = 2
META_FILE = "ranking.json"

DROPPED_BELOW_TOP_K = "positive_below_top_k"
KEPT_FILTER_OFF = "filter_off"
KEPT_SMALL_CORPUS = "corpus_not_larger_than_top_k"
SCREEN_COUNTS = ("candidates", "removed_as_false_negatives")


@dataclass
class TaskRanking:
    """The teacher's view of one task. Queries are deduplicated: rows point into them."""

    task: str
    corpus: list[str]
    row_indices: np.ndarray  # int64 [n_rows]: positions of this task's rows in the input list
    query_of_row: np.ndarray  # int32 [n_rows]: row -> its query's line in top_indices
    top_indices: np.ndarray  # int32 [n_queries, depth]: corpus indices, best first
    top_scores: np.ndarray  # float32 [n_queries, depth]
    positive_score: np.ndarray  # float32 [n_rows]: best cosine among the row's positives
    positive_rank: np.ndarray  # int32 [n_rows]: best 0-based rank of a positive; depth if not in top

    @property
    def depth(self) -> int:
        return int(self.top_indices.shape[1])


TASK_ARRAYS = ("row_indices", "query_of_row", "top_indices", "top_scores", "positive_score", "positive_rank")


@dataclass
class TeacherRanking:
    teacher_id: str
    depth: int  # requested depth; a task's own depth is min(depth, corpus size)
    key: str
    rows_fingerprint: str
    n_rows: int
    tasks: Mapping[str, TaskRanking]  # a dict in memory, or `StoredTasks` (loaded one task at a time)
    stats: dict[str, Any] = field(default_factory=dict)  # texts encoded, seconds spent


# --------------------------------------------------------------------------- keys


def rows_fingerprint(rows: Iterable[TrainRow]) -> str:
    """sha256 over the rows' (task, query, pos, neg), streamed so large tables never become one string."""
    from harness.data.teacher import RowsDigest

    digest = RowsDigest()
    for row in rows:
        digest.add(row)
    return digest.hexdigest()


def ranking_key(
    teacher_id: str,
    rows: Iterable[TrainRow],
    depth: int,
    candidate_pools: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Cache key of a teacher pass: teacher id + the rows' (task, query, pos, neg) + depth (+ pools)."""
    return _key(teacher_id, rows_fingerprint(rows), depth, candidate_pools)


def _key(teacher_id: str, fingerprint: str, depth: int, candidate_pools: Mapping[str, Sequence[str]] | None) -> str:
    pools = None if candidate_pools is None else {t: list(p) for t, p in candidate_pools.items()}
    return content_hash({
        "format": RANKING_FORMAT,
        "teacher": teacher_id,
        "depth": depth,
        "rows": fingerprint,
        "pools": pools,
    })


# --------------------------------------------------------------------------- teacher pass
# Index, plan, sharded encoding and blocked search live in harness.data.teacher; this is the orchestration.


def teacher_pass(
    rows: Sequence[TrainRow],
    embed: EmbedFn,
    *,
    depth: int = 128,
    batch_size: int = 256,
    show_progress: bool = True,
    teacher_id: str = "",
    candidate_pools: Mapping[str, Sequence[str]] | None = None,
    store_dir: str | Path | None = None,
    store_dtype: str | None = None,
    fingerprint: str | None = None,
    out_dir: str | Path | None = None,
) -> TeacherRanking:
    """Per task: read its rows, encode its unique queries and corpus, exact top-`depth` search.

    `embed(texts, side)` must return L2-normalised float32 vectors; query texts are passed as they
    are in the rows (a caller wanting instructions applies them inside `embed`).
    `candidate_pools` (task -> texts) replaces a task's corpus, as KaLM's `--candidate_pool`.
    Vectors go to `store_dir/<store key>` (reused when present) or a temp folder, as float16 or
    float32 (`store_dtype`; default by size, see `harness.data.teacher`). Shards already written
    there (by `encode_teacher_shard` in other processes) are used as they are. `fingerprint`: the rows'
    `rows_fingerprint`, when the caller has it (else the rows are hashed here).
    `out_dir`: each task's ranking is written there as soon as it is made (`save_ranking`'s layout)
    and the ranking returned reads its tasks from there one at a time; without it every task stays in
    memory (small tables, tests).
    """
    import tempfile

    from tqdm.auto import tqdm

    from harness.data.teacher import (
        EmbeddingStore,
        index_rows,
        iter_task_plans,
        search_backend,
    )

    if depth < 1:
        raise HarnessError(f"teacher pass: depth must be >= 1, got {depth}")
    index = index_rows(rows, candidate_pools)
    if not index.n_rows:
        raise HarnessError("teacher pass: no rows to rank")
    fingerprint = fingerprint or rows_fingerprint(rows)
    tasks: dict[str, TaskRanking] = {}
    writer = RankingWriter(Path(out_dir)) if out_dir is not None else None
    with tempfile.TemporaryDirectory(prefix="harness-teacher-") as tmp:
        store = EmbeddingStore(Path(store_dir) if store_dir is not None else Path(tmp), teacher_id, fingerprint,
                               batch_size, store_dtype or index.store_dtype(), candidate_pools)
        n_shards = store.complete()
        encode = n_shards is None  # else every shard's vectors are on disk already
        n_shards = n_shards or 1
        stats: dict[str, Any] = {"texts_encoded": 0, "encode_seconds": 0.0, "search_seconds": 0.0,
                                 "shards": n_shards, "store": store.folder.name, "store_dtype": store.dtype}
        backends: set[str] = set()
        with tqdm(total=index.n_rows, desc="teacher pass", unit="row", disable=not show_progress) as bar:
            for plan in iter_task_plans(rows, index, candidate_pools):
                if encode:
                    start = time.perf_counter()
                    stats["texts_encoded"] += store.encode_task(plan, embed)
                    stats["encode_seconds"] += time.perf_counter() - start
                start = time.perf_counter()
                task = _rank_task(plan, store.task_vectors(plan, n_shards), depth)
                stats["search_seconds"] += time.perf_counter() - start
                backends.add(search_backend(len(plan.corpus)))
                if writer is not None:
                    writer.add(task)  # written, then dropped: memory holds one task
                else:
                    tasks[plan.task] = task
                bar.update(len(plan.row_indices))
        if encode:
            store.finish(0, 1)
            if getattr(embed, "machine", None):  # what encoded (near-ties in a ranking move with the hardware)
                stats["machine"] = embed.machine  # type: ignore[attr-defined]
        stats["search_backend"] = sorted(backends)
    ranking = TeacherRanking(teacher_id=teacher_id, depth=depth, key=_key(teacher_id, fingerprint, depth, candidate_pools),
                             rows_fingerprint=fingerprint, n_rows=index.n_rows, tasks=tasks, stats=stats)
    if writer is not None:
        ranking.tasks = writer.finish(ranking)
    return ranking


def encode_teacher_shard(
    rows: Sequence[TrainRow],
    embed: EmbedFn,
    teacher_id: str,
    cache_dir: str | Path,
    shard: int,
    n_shards: int,
    *,
    batch_size: int = 256,
    show_progress: bool = True,
    candidate_pools: Mapping[str, Sequence[str]] | None = None,
    store_dtype: str | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Encode shard `shard` of `n_shards` of the teacher pass into `cache_dir/teacher-embeddings/`.

    Run by every rank of a torchrun group or by N executor jobs; the search (`cached_teacher_pass`,
    one process) then reads every shard's files memory-mapped. Every shard plans every task (reading
    its rows) and encodes its own units. Returns what this shard did.
    """
    from tqdm.auto import tqdm

    from harness.data.teacher import EmbeddingStore, index_rows, iter_task_plans

    index = index_rows(rows, candidate_pools)
    store = EmbeddingStore(Path(cache_dir) / "teacher-embeddings", teacher_id, fingerprint or rows_fingerprint(rows),
                           batch_size, store_dtype or index.store_dtype(), candidate_pools)
    if not 0 <= shard < n_shards:
        raise HarnessError(f"teacher pass: shard {shard} is not in [0, {n_shards})")
    start = time.perf_counter()
    encoded = 0
    desc = f"teacher pass (shard {shard + 1}/{n_shards})"
    with tqdm(total=index.n_rows, desc=desc, unit="row", disable=not show_progress) as bar:
        for plan in iter_task_plans(rows, index, candidate_pools):
            encoded += store.encode_task(plan, embed, shard, n_shards)
            bar.update(len(plan.row_indices))
    store.finish(shard, n_shards)
    return {"shard": shard, "shards": n_shards, "texts_encoded": encoded, "store": store.folder.name,
            "encode_seconds": round(time.perf_counter() - start, 3), "complete": store.complete(n_shards) == n_shards}


def _rank_task(plan: Any, vectors: Any, depth: int, chunk: int = 65_536) -> TaskRanking:
    """One task's top lists and its rows' best positive score and rank, from its stored vectors."""
    from harness.data.teacher import blocked_top_k

    n_queries, n_corpus = len(plan.queries), len(plan.corpus)
    top_scores, top_indices = blocked_top_k(lambda lo, hi: vectors("query", np.arange(lo, hi)), n_queries,
                                            lambda lo, hi: vectors("passage", np.arange(lo, hi)), n_corpus, depth)
    query_of_row = plan.query_of_row
    pos_lists = plan.positives
    # Best positive per row: score every (row, positive) pair, then max within each row.
    counts = np.asarray([len(p) for p in pos_lists], dtype=np.int64)
    flat_pos = np.fromiter((j for p in pos_lists for j in p), dtype=np.int64, count=int(counts.sum()))
    pair_rows = np.repeat(np.arange(len(pos_lists)), counts)
    pair_scores = np.empty(len(flat_pos), dtype=np.float32)
    for lo in range(0, len(flat_pos), chunk):
        hi = min(lo + chunk, len(flat_pos))
        q = vectors("query", query_of_row[pair_rows[lo:hi]])
        c = vectors("passage", flat_pos[lo:hi])
        pair_scores[lo:hi] = np.einsum("ij,ij->i", q, c)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    positive_score = np.maximum.reduceat(pair_scores, starts).astype(np.float32)
    positive_rank = _best_positive_rank(top_indices, query_of_row, pos_lists)
    return TaskRanking(
        task=plan.task,
        corpus=plan.corpus,
        row_indices=plan.row_indices,
        query_of_row=query_of_row,
        top_indices=top_indices,
        top_scores=top_scores,
        positive_score=positive_score,
        positive_rank=positive_rank,
    )


def _best_positive_rank(top_indices: np.ndarray, query_of_row: np.ndarray, pos_lists: list[list[int]],
                        chunk: int = 4096) -> np.ndarray:
    """0-based rank of each row's best-ranked positive within its top list (depth when absent)."""
    depth = top_indices.shape[1]
    out = np.full(len(pos_lists), depth, dtype=np.int32)
    for start in range(0, len(pos_lists), chunk):
        part = pos_lists[start : start + chunk]
        padded = _pad([np.asarray(p, dtype=np.int64) for p in part])
        hit = (top_indices[query_of_row[start : start + len(part)]][:, :, None] == padded[:, None, :]).any(-1)
        found = hit.any(1)
        out[start : start + len(part)][found] = hit.argmax(1)[found]
    return out


def _pad(lists: Sequence[np.ndarray], fill: int = -1) -> np.ndarray:
    width = max((len(x) for x in lists), default=0)
    out = np.full((len(lists), max(width, 1)), fill, dtype=np.int64)
    for i, x in enumerate(lists):
        out[i, : len(x)] = x
    return out


# --------------------------------------------------------------------------- storage
# A ranking folder: ranking.json (meta, task names), per task i `task_<i>.npz` (its arrays) and
# `task_<i>.corpus.arrow` (its corpus, one Arrow string column, read memory-mapped by position).


def _task_file(folder: Path, i: int, suffix: str) -> Path:
    return folder / f"task_{i:05d}.{suffix}"


class RankingWriter:
    """Writes a ranking into a folder task by task (`add`), then its index (`finish`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, task: TaskRanking) -> None:
        import pyarrow as pa

        i = len(self.names)
        arrays = {name: getattr(task, name) for name in TASK_ARRAYS}
        with _task_file(self.folder, i, "npz").open("wb") as handle:
            np.savez(handle, **arrays)
        with pa.OSFile(str(_task_file(self.folder, i, "corpus.arrow")), "wb") as sink:
            column = pa.array(task.corpus, type=pa.large_string())
            with pa.ipc.new_file(sink, pa.schema([("text", pa.large_string())])) as out:
                out.write_table(pa.table({"text": column}))
        self.names.append(task.task)

    def finish(self, ranking: TeacherRanking) -> StoredTasks:
        atomic.write_json(self.folder / META_FILE, {
            "format": RANKING_FORMAT,
            "teacher_id": ranking.teacher_id,
            "depth": ranking.depth,
            "key": ranking.key,
            "rows_fingerprint": ranking.rows_fingerprint,
            "n_rows": ranking.n_rows,
            "tasks": self.names,
            "stats": ranking.stats,
        })
        return StoredTasks(self.folder, self.names)


class StoredTasks(Mapping[str, TaskRanking]):
    """The tasks of a ranking folder, each loaded from disk when asked for (never all at once)."""

    def __init__(self, folder: Path, names: list[str]) -> None:
        self.folder = folder
        self._number = {name: i for i, name in enumerate(names)}

    def __getitem__(self, name: str) -> TaskRanking:
        i = self._number[name]
        with np.load(_task_file(self.folder, i, "npz"), allow_pickle=False) as arrays:
            parts = {k: arrays[k] for k in TASK_ARRAYS}
        return TaskRanking(task=name, corpus=read_corpus(self.corpus_path(name)).to_pylist(), **parts)

    def corpus_path(self, name: str) -> Path:
        return _task_file(self.folder, self._number[name], "corpus.arrow")

    def __iter__(self) -> Iterator[str]:
        return iter(self._number)

    def __len__(self) -> int:
        return len(self._number)


def read_corpus(path: Path) -> Any:
    """A stored corpus as a memory-mapped Arrow array (`take(indices)`, `to_pylist()`)."""
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all().column("text")


def save_ranking(ranking: TeacherRanking, folder: str | Path) -> Path:
    """Write a ranking (task by task) into `folder`, atomically."""
    folder = Path(folder)
    with atomic.staged_dir(folder) as tmp:
        writer = RankingWriter(tmp)
        for task in ranking.tasks.values():
            writer.add(task)
        writer.finish(ranking)
    return folder


def load_ranking(folder: str | Path) -> TeacherRanking:
    """A stored ranking; its tasks load from disk one at a time when read."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise HarnessError(f"{folder}: not a teacher ranking (no {META_FILE})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != RANKING_FORMAT:
        raise HarnessError(f"{meta_path}: ranking format {meta.get('format')!r}, this harness reads {RANKING_FORMAT}")
    return TeacherRanking(
        teacher_id=meta["teacher_id"],
        depth=int(meta["depth"]),
        key=meta["key"],
        rows_fingerprint=meta["rows_fingerprint"],
        n_rows=int(meta["n_rows"]),
        tasks=StoredTasks(folder, list(meta["tasks"])),
        stats=dict(meta.get("stats", {})),
    )


def cached_teacher_pass(
    rows: Sequence[TrainRow],
    embed: EmbedFn,
    teacher_id: str,
    cache_dir: str | Path | None = None,
    depth: int = 128,
    *,
    batch_size: int = 256,
    show_progress: bool = True,
    candidate_pools: Mapping[str, Sequence[str]] | None = None,
    store_dtype: str | None = None,
    fingerprint: str | None = None,
) -> TeacherRanking:
    """`teacher_pass` once per (teacher id, rows, depth): later calls load `cache_dir/rankings/<key>`.

    `cache_dir` defaults to `harness.paths.cache_root()`. The teacher is only called on a miss, and
    then only for vectors not already in `cache_dir/teacher-embeddings/` (e.g. written by shards).
    `fingerprint`: the rows' `rows_fingerprint` if known (the mix card has it), so the rows are not
    hashed again for the key. The ranking's tasks are written as they are made and read back one at a
    time, so neither the pass nor its user holds every task at once.
    """
    if cache_dir is None:
        from harness.paths import cache_root

        cache_dir = cache_root()
    from harness.locks import locked

    fingerprint = fingerprint or rows_fingerprint(rows)
    key = _key(teacher_id, fingerprint, depth, candidate_pools)
    if store_dtype is not None:  # a forced precision is another ranking (the default follows the rows)
        key = content_hash([key, store_dtype])
    folder = Path(cache_dir) / "rankings" / key
    cache = "hit"
    if not (folder / META_FILE).is_file():
        with locked(folder, what=f"teacher ranking {key}"):  # one teacher pass across processes
            if not (folder / META_FILE).is_file():
                atomic.remove_stale_staging(folder, legacy=True)
                with atomic.staged_dir(folder) as tmp:
                    teacher_pass(rows, embed, depth=depth, batch_size=batch_size, show_progress=show_progress,
                                 teacher_id=teacher_id, candidate_pools=candidate_pools,
                                 store_dir=Path(cache_dir) / "teacher-embeddings", store_dtype=store_dtype,
                                 fingerprint=fingerprint, out_dir=tmp)
                cache = "miss"
    if cache == "hit":
        atomic.remove_stale_staging(folder)  # a killed teacher pass's staging still goes (dead owners only)
    ranking = load_ranking(folder)
    ranking.stats = {**ranking.stats, "cache": cache}
    return ranking


# --------------------------------------------------------------------------- the cut


class CorpusTexts:
    """Texts of each task's corpus by index, for writing the kept rows: in-memory lists, or stored corpus
    files memory-mapped a few at a time (a mapped file's pages count as this process's memory until
    it is closed, so rows of many tasks in any order never map every corpus at once)."""

    OPEN = 4

    def __init__(self, sources: list[Sequence[str] | Path]) -> None:
        self._sources = sources
        self._open: OrderedDict[int, Any] = OrderedDict()

    def texts(self, task: int, indices: list[int]) -> list[str]:
        source = self._sources[task]
        if not isinstance(source, Path):
            return [source[j] for j in indices]
        column = self._open.pop(task, None)
        if column is None:
            column = read_corpus(source)
        self._open[task] = column
        while len(self._open) > self.OPEN:
            self._open.popitem(last=False)
        return column.take(indices).to_pylist() if indices else []


@dataclass
class FilterCut:
    """The outcome of the cut, compactly: which input rows survive and the corpus items they gain.

    A kept row's negatives are its own cleaned negatives (recomputed from the row) followed by
    `extra[line]` (corpus indices of its task, mined then padding; -1 = none), so the kept rows are
    written by streaming the input once more (`rows`) instead of being held in memory: 4 bytes per
    negative slot per kept row, memory-mapped when the cut was given a scratch folder.
    """

    negatives: int
    corpora: CorpusTexts
    task_of_row: np.ndarray  # int32 [n_rows]: task index of a kept row, -1 if dropped
    line_of_row: np.ndarray  # int64 [n_rows]: the kept row's line in `extra`
    extra: np.ndarray  # int32 [kept rows, negatives]: corpus indices of the row's task, -1 padded

    @property
    def kept(self) -> int:
        return int((self.task_of_row >= 0).sum())

    def rows(self, rows: Iterable[TrainRow]) -> Iterator[TrainRow]:
        """The kept rows of `rows` (the same rows the cut was made on), in input order, with their negatives."""
        scratch: dict[str, int] = {"existing_discarded": 0}
        for i, row in enumerate(rows):
            task = int(self.task_of_row[i])
            if task < 0:
                continue
            negs = _clean_existing(row, self.negatives, scratch) if self.negatives else []
            if self.negatives:
                negs.extend(self.corpora.texts(task, [j for j in self.extra[self.line_of_row[i]].tolist() if j >= 0]))
            yield replace(row, neg=negs)


def apply_filter(
    rows: Sequence[TrainRow],
    ranking: TeacherRanking,
    *,
    top_k: int | None,
    negatives: int,
    window: tuple[int, int] = (50, 100),
    seed: int = 0,
    rule: MiningRule | None = None,
) -> tuple[list[TrainRow], dict[str, Any]]:
    """Kept rows (input order) with `negatives` negatives each where the corpus allows, and a report.

    A list, for small inputs and tests; `cut_rows` + `FilterCut.rows` stream the same rows.
    """
    cut, report = cut_rows(rows, ranking, top_k=top_k, negatives=negatives, window=window, seed=seed, rule=rule)
    return list(cut.rows(rows)), report


def cut_rows(
    rows: Sequence[TrainRow],
    ranking: TeacherRanking,
    *,
    top_k: int | None,
    negatives: int,
    window: tuple[int, int] = (50, 100),
    seed: int = 0,
    rule: MiningRule | None = None,
    fingerprint: str | None = None,
    scratch: str | Path | None = None,
) -> tuple[FilterCut, dict[str, Any]]:
    """Which rows survive the cut and which negatives they get (a `FilterCut`), and a report.

    `rule` says which ranked candidates may be mined (harness.data.mining; default: KaLM's `window`).
    Report (for the data card): rows before/after, dropped rows by reason, rows kept without a test
    (filter off, or a corpus of at most `top_k` items), where the negatives came from
    (`existing` / `mined` / `padding`; `missing` when a corpus is too small to fill every slot;
    `existing_discarded` counts given negatives equal to a positive, the query or an earlier one),
    and per task what the rule did (`mining`): ranked candidates it screened (not a positive, the
    query or an existing negative), how many it removed as likely false negatives, and the teacher
    scores of the mined negatives relative to their row's positive (ratio and margin quantiles).
    `fingerprint`: the rows' `rows_fingerprint` if the caller has it (else the rows are hashed here).
    Task by task: each task's rows and ranking are read, cut and mined, and only its compact outcome
    kept; with `scratch` (a folder the caller removes after writing the rows) the negatives go to a file
    there, memory-mapped, instead of memory.
    """
    rule = rule or MiningRule(window=window)
    lo, hi = rule.window
    if not 0 <= lo < hi:
        raise HarnessError(f"hard-negative window {rule.window}: need 0 <= lo < hi")
    if negatives < 0:
        raise HarnessError(f"negatives must be >= 0, got {negatives}")
    if top_k is not None and top_k < 0:
        raise HarnessError(f"top_k must be >= 0 or None, got {top_k}")
    if len(rows) != ranking.n_rows or (fingerprint or rows_fingerprint(rows)) != ranking.rows_fingerprint:
        raise HarnessError(
            f"teacher ranking {ranking.key} was computed for other rows ({ranking.n_rows} rows); "
            "run the teacher pass on exactly these rows"
        )

    from harness.data.teacher import rows_at

    task_of_row = np.full(len(rows), -1, dtype=np.int32)
    line_of_row = np.zeros(len(rows), dtype=np.int64)
    corpora: list[Sequence[str] | Path] = []
    extras = _Extras(negatives, scratch)
    per_task: dict[str, dict[str, Any]] = {}
    all_scores: list[np.ndarray] = []
    for t, (name, task) in enumerate(ranking.tasks.items()):  # a stored ranking loads one task at a time
        keep, reasons = _cut(task, top_k)
        task_rows = rows_at(rows, task.row_indices)
        extra, neg_counts, screened, scores = _mine_negatives(task_rows, task, keep, negatives, rule, seed)
        kept_rows = task.row_indices[keep]
        task_of_row[kept_rows] = t
        line_of_row[kept_rows] = extras.add(extra)
        # a stored corpus is read back by position, memory-mapped, when the kept rows are written
        corpora.append(ranking.tasks.corpus_path(name) if isinstance(ranking.tasks, StoredTasks) else task.corpus)
        all_scores.append(scores)
        per_task[name] = {
            "corpus_size": len(task.corpus),
            "rows_before": len(task.row_indices),
            "rows_after": int(keep.sum()),
            **reasons,
            "negatives": neg_counts,
            "mining": {**screened, **relative_scores(scores[:, 0], scores[:, 1])},
        }
        del task, task_rows, extra
    cut = FilterCut(negatives=negatives, corpora=CorpusTexts(corpora), task_of_row=task_of_row,
                    line_of_row=line_of_row, extra=extras.finish())
    scores = np.concatenate(all_scores) if all_scores else np.zeros((0, 2), dtype=np.float32)
    report = {
        "teacher": ranking.teacher_id,
        "ranking_key": ranking.key,
        "depth": ranking.depth,
        "top_k": top_k,
        "window": [lo, hi],
        "negatives_rule": rule.describe(),
        "negatives_per_row": negatives,
        "seed": seed,
        "rows_before": len(rows),
        "rows_after": cut.kept,
        "dropped": _sum_counts(t["dropped"] for t in per_task.values()),
        "kept_unfiltered": _sum_counts(t["kept_unfiltered"] for t in per_task.values()),
        "negatives": _sum_counts(t["negatives"] for t in per_task.values()),
        "mining": {**_sum_counts({k: v for k, v in t["mining"].items() if k in SCREEN_COUNTS}
                                 for t in per_task.values()),
                   **relative_scores(scores[:, 0], scores[:, 1])},
        "tasks": per_task,
    }
    return cut, report


class _Extras:
    """The kept rows' gained negatives of every task, appended task by task: in memory, or to a file in
    `scratch` that is memory-mapped once complete."""

    def __init__(self, negatives: int, scratch: str | Path | None) -> None:
        self._width = negatives
        self._lines = 0
        self._parts: list[np.ndarray] = []
        self._path = None if scratch is None else Path(scratch) / "negatives.int32"
        self._file = None
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("wb")

    def add(self, extra: np.ndarray) -> np.ndarray:
        """Appends one task's [kept rows, negatives] block; returns its rows' lines."""
        lines = np.arange(self._lines, self._lines + len(extra), dtype=np.int64)
        self._lines += len(extra)
        if self._file is not None:
            self._file.write(np.ascontiguousarray(extra, dtype=np.int32).tobytes())
        else:
            self._parts.append(extra)
        return lines

    def finish(self) -> np.ndarray:
        if self._file is None:
            return np.concatenate(self._parts) if self._parts else np.zeros((0, self._width), dtype=np.int32)
        self._file.close()
        if not self._lines or not self._width:
            return np.zeros((self._lines, self._width), dtype=np.int32)
        return np.memmap(self._path, dtype=np.int32, mode="r", shape=(self._lines, self._width))


def _cut(task: TaskRanking, top_k: int | None) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    n = len(task.row_indices)
    keep = np.ones(n, dtype=bool)
    unfiltered = {KEPT_FILTER_OFF: 0, KEPT_SMALL_CORPUS: 0}
    if top_k is None:
        unfiltered[KEPT_FILTER_OFF] = n
    elif len(task.corpus) <= top_k:  # KaLM: no item at rank top_k, nothing to compare against
        unfiltered[KEPT_SMALL_CORPUS] = n
    else:
        if top_k >= task.depth:
            raise HarnessError(
                f"task {task.task!r}: top_k={top_k} needs a teacher ranking deeper than {top_k}; this one "
                f"has depth {task.depth} (run the teacher pass with depth >= {top_k + 1})"
            )
        threshold = task.top_scores[task.query_of_row, top_k]
        # The rank test keeps a positive that is itself the item at rank top_k (float ties).
        keep = (task.positive_score >= threshold) | (task.positive_rank <= top_k)
    return keep, {"dropped": {DROPPED_BELOW_TOP_K: int(n - keep.sum())}, "kept_unfiltered": unfiltered}


def _mine_negatives(task_rows: Sequence[TrainRow], task: TaskRanking, keep: np.ndarray, n: int, rule: MiningRule,
                    seed: int, chunk: int = 8192
                    ) -> tuple[np.ndarray, dict[str, int], dict[str, int], np.ndarray]:
    """Negatives for the kept rows of one task (`task_rows`: its rows, in `task.row_indices` order):
    existing first, then ranked candidates the rule allows,
    then random padding. Returns the corpus items each kept row gains (int32 [kept, n], mined then
    padding, -1 padded; its existing negatives are recomputed from the row when it is written), the
    counts, the rule's screening counts and, per mined negative, its (teacher score, its row's
    positive score) float32 [m, 2]."""
    counts = {"existing": 0, "mined": 0, "padding": 0, "missing": 0, "existing_discarded": 0}
    screened = dict.fromkeys(SCREEN_COUNTS, 0)
    kept_positions = np.flatnonzero(keep)
    pairs: list[np.ndarray] = []
    extra = np.full((len(kept_positions), n), -1, dtype=np.int32)
    if n == 0:
        return extra, counts, screened, np.zeros((0, 2), dtype=np.float32)
    window = rule.window
    if rule.method == "window" and window[1] > task.depth and len(task.corpus) > task.depth:
        raise HarnessError(
            f"task {task.task!r}: negative window {window} reaches past the teacher ranking depth "
            f"{task.depth} (run the teacher pass with depth >= {window[1]})"
        )
    corpus = task.corpus
    index = {t: j for j, t in enumerate(corpus)}
    task_seed = int(content_hash(task.task), 16)
    lo, hi = rule.candidate_ranks(task.depth)
    # One random priority per (row, candidate slot), drawn for every row before the cut: a row's
    # negatives are then the same under every top_k (for the window: KaLM's draw, as before rules).
    slots_all, scores_all = task.top_indices[:, lo:hi], task.top_scores[:, lo:hi]
    skipped_all = task.top_indices[:, :lo]  # the window's ranks above lo: skipped as likely false negatives
    ceilings = rule.ceilings(task.positive_score)
    hardest = rule.sampling_used == "hardest"
    # Hardest-first needs no draw; a random draw is produced row block by row block, never whole.
    draws = None if hardest else _RowDraws([seed, task_seed], slots_all.shape[1])

    for start in range(0, len(kept_positions), chunk):
        positions = kept_positions[start : start + chunk]
        existing, excluded = [], []
        for position in positions:
            row = task_rows[int(position)]
            negs = _clean_existing(row, n, counts)
            existing.append(negs)
            excluded.append(np.asarray([index[t] for t in (*row.pos, row.query, *negs) if t in index], dtype=np.int64))
        blocked_pad = _pad(excluded)[:, None, :]
        slots = slots_all[task.query_of_row[positions]]  # [chunk, width] corpus indices, best first
        scores = scores_all[task.query_of_row[positions]]
        valid = ~(slots[:, :, None] == blocked_pad).any(-1)
        eligible = valid if ceilings is None else valid & (scores < ceilings[positions][:, None])
        removed = valid & ~eligible
        skipped = ~(skipped_all[task.query_of_row[positions]][:, :, None] == blocked_pad).any(-1)
        screened["candidates"] += int(valid.sum() + skipped.sum())
        screened["removed_as_false_negatives"] += int(removed.sum() + skipped.sum())
        rank_or_draw = np.broadcast_to(np.arange(slots.shape[1]), slots.shape) if draws is None \
            else draws.take(positions)
        order = np.argsort(np.where(eligible, rank_or_draw, np.inf), axis=1, kind="stable")
        for i, position in enumerate(positions):
            negs = existing[i]
            counts["existing"] += len(negs)
            need = n - len(negs)
            gained: list[int] = []
            if need > 0:
                chosen = sorted(j for j in order[i, :need] if eligible[i, j])  # hardest first
                gained.extend(int(slots[i, j]) for j in chosen)
                if chosen:
                    pairs.append(np.stack([scores[i, chosen], np.full(len(chosen), task.positive_score[position])], 1))
                counts["mined"] += len(chosen)
                need -= len(chosen)
            if need > 0:
                # padding never picks what the rule removed as a likely false negative (the window's
                # skipped ranks stay eligible for padding, as in KaLM)
                blocked = set(excluded[i].tolist()) | {index[t] for t in negs if t in index} | set(gained) | \
                    {int(j) for j in slots[i][removed[i]]}
                padding = _random_corpus_items(len(corpus), need, blocked, [seed, task_seed, int(position)])
                gained.extend(padding)
                counts["padding"] += len(padding)
                counts["missing"] += need - len(padding)
            extra[start + i, : len(gained)] = gained
    mined = np.concatenate(pairs).astype(np.float32) if pairs else np.zeros((0, 2), dtype=np.float32)
    return extra, counts, screened, mined


class _RowDraws:
    """Rows of `default_rng(seed).random((n_rows, width))`, produced in row order a block at a time.

    `take(positions)` (ascending, after every earlier call's) returns those rows, bit-identical to
    indexing the whole array, while memory holds one block: a random mining draw costs no
    rows x window float64 array.
    """

    BLOCK = 16_384

    def __init__(self, seed: list[int], width: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._width = width
        self._next = 0  # first row not drawn yet

    def take(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty((len(positions), self._width), dtype=np.float64)
        done = 0
        while done < len(positions):
            lo = self._next
            hi = min(lo + self.BLOCK, int(positions[-1]) + 1)
            block = self._rng.random((hi - lo, self._width))
            self._next = hi
            upto = done + int(np.searchsorted(positions[done:], hi))
            out[done:upto] = block[positions[done:upto] - lo]
            done = upto
        return out


def _clean_existing(row: TrainRow, n: int, counts: dict[str, int]) -> list[str]:
    """The row's own negatives, first `n`, minus any equal to a positive, the query or an earlier one."""
    blocked = {*row.pos, row.query}
    kept: list[str] = []
    for neg in row.neg:
        if neg in blocked or neg in kept:
            counts["existing_discarded"] += 1
            continue
        kept.append(neg)
    return kept[:n]


def _random_corpus_items(size: int, need: int, blocked: set[int], seed: list[int]) -> list[int]:
    """`need` distinct corpus indices outside `blocked` (fewer if the corpus has fewer), seeded per row."""
    rng = np.random.default_rng(seed)
    draw = min(size, need + len(blocked))  # enough that `need` survive the exclusion, if they exist
    picks = rng.choice(size, size=draw, replace=False)
    return [int(j) for j in picks if int(j) not in blocked][:need]


def _sum_counts(parts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + int(value)
    return total
