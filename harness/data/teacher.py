"""The teacher pass at scale, task by task: plan, sharded encoding into memory-maps, blocked exact search.

Memory follows the largest task, never the table: nothing holds every text of the table at once.

1. **Index** (one cheap pass, no texts): per task (first-appearance order) its row positions, read
   from the table's task column (`RowTable.task_codes`), and the table's text count.
2. **Plan** (per task): that task's rows only are read (`rows_at`: a transient memory map, dropped
   after the task) into its unique queries and corpus (first-appearance order, as `filtering`
   documents). Each side's texts are cut into *encoding units* of `batch_size` texts; unit `k` of
   task `t` (queries first, then passages) belongs to shard `(t + k) % n`. A unit is one call of
   the teacher, so a text's vector depends only on its unit, never on how many processes share the
   work. Texts are deduplicated within a task: a text shared by two tasks is encoded once per task.
3. **Encode** (sharded): process `s` of `n` plans every task and encodes its own units, one `.npy`
   per task (written to a temp name and renamed), then marks itself done. Ranks of a torchrun group,
   or N executor jobs, each write their own files into a folder keyed by the teacher and the rows'
   fingerprint; nothing is gathered over the network, and a killed shard resumes at its next task.
4. **Search** (one process, per task): exact inner-product top-`depth`, in blocks of queries x
   corpus read from the task's memory-mapped files (never a whole large corpus in memory), merged
   block by block. Order is (score descending, corpus index ascending), ties included, and block
   sizes depend only on the corpus size, so the list for depth d is the prefix of the list for any
   larger depth and the result is the same for any number of shards. ("Equal" is equal float32
   scores: two copies of one vector may score a last bit apart depending on where they sit in the
   matmul's tiles; that too is fixed by the data, never by depth or shards.)

float16 (for tables of FLOAT16_FROM_TEXTS texts or more) halves the disk and page-cache footprint
of the vectors (a 10M x 896 corpus is 18 GB, not 36); scores are computed in float32 from the stored
values, so every process sees the same numbers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.data.rows import TrainRow
from harness.data.table import RowTable
from harness.errors import HarnessError
from harness.hashing import canonical_json, content_hash

Side = Literal["query", "passage"]
SIDES: tuple[Side, Side] = ("query", "passage")
EmbedFn = Callable[[list[str], Side], np.ndarray]

# 2: files per task and shard, units cut per task (texts deduplicated per task), keyed by the rows
STORE_FORMAT = 2
# Vectors are stored float16 for tables of this many texts or more (queries, positives, negatives and
# candidate pools, counted with repeats; float32 below): float16 halves the store at KaLM scale, while
# small passes (the quickstart, every test) keep float32 vectors. The choice depends on the rows only,
# never on shards or depth.
FLOAT16_FROM_TEXTS = 1_000_000
# Budget for one block of the [queries, corpus] score matrix (float32 elements, ~256 MB).
SCORE_BLOCK_ELEMENTS = 64 * 1024 * 1024
CORPUS_BLOCK = 65_536  # corpus vectors per search block
# FAISS (IndexFlatIP's exact kernel, `faiss.knn`) searches corpora from this size on, when installed
# (`pip install harness[faiss]`); below it, and without FAISS, torch. Both are exact, both order by
# (score, corpus index); they may differ in the last float bit of a score, so the backend a ranking
# used is recorded in its stats. The choice depends on the corpus size only.
FAISS_MIN_CORPUS = 1_000_000


# --------------------------------------------------------------------------- index and plan


class RowsDigest:
    """The rows' fingerprint (sha256 over each row's canonical [task, query, pos, neg]), fed row by row,
    so whoever streams the rows anyway (the mix writer) hashes them on the way."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, row: TrainRow) -> None:
        self._digest.update(canonical_json([row.task, row.query, row.pos, row.neg]).encode("utf-8"))
        self._digest.update(b"\n")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()




@dataclass
class TableIndex:
    """Where each task's rows are, without their texts."""

    tasks: dict[str, np.ndarray]  # task -> int64 ascending row positions; tasks in first-appearance order
    n_rows: int
    n_texts: int  # queries + positives + negatives + candidate pools, with repeats (the store's dtype)

    def store_dtype(self) -> str:
        return "float16" if self.n_texts >= FLOAT16_FROM_TEXTS else "float32"


def index_rows(rows: Sequence[TrainRow], candidate_pools: Mapping[str, Sequence[str]] | None = None) -> TableIndex:
    """Per task its row positions: from the task column of a `RowTable` (no texts read), else from the list."""
    if isinstance(rows, RowTable):
        codes, names, n_texts = rows.task_codes(), rows.task_names(), rows.text_count()
    else:
        known: dict[str, int] = {}
        codes = np.fromiter((known.setdefault(r.task, len(known)) for r in rows), dtype=np.int32, count=len(rows))
        names, n_texts = list(known), sum(1 + len(r.pos) + len(r.neg) for r in rows)
    pools = candidate_pools or {}
    n_texts += sum(len(pools[name]) for name in names if name in pools)
    order = np.argsort(codes, kind="stable").astype(np.int64)
    bounds = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
    return TableIndex(tasks=dict(zip(names, np.split(order, bounds), strict=True)), n_rows=len(codes),
                      n_texts=int(n_texts))


def rows_at(rows: Sequence[TrainRow], positions: np.ndarray) -> list[TrainRow]:
    """The rows at ascending `positions` (a table reads them through a memory map it drops afterwards)."""
    if isinstance(rows, RowTable):
        return rows.take(positions)
    return [rows[int(i)] for i in positions]


@dataclass
class TaskPlan:
    """One task's rows as the teacher sees them: unique queries and corpus, each row's positives."""

    index: int  # the task's number (first appearance): its units' shards depend on it
    task: str
    row_indices: np.ndarray  # int64 [n_rows]: positions of this task's rows in the table
    queries: list[str]  # unique queries, first appearance
    query_of_row: np.ndarray  # int32 [n_rows]
    corpus: list[str]  # unique corpus texts (pool first, if any), first appearance
    positives: list[list[int]]  # per row: corpus indices of its positives

    def units(self, batch_size: int) -> list[tuple[int, int, int]]:
        """(side index, first, end) of each encoding unit, queries then passages: unit k's shard of n is
        (index + k) % n."""
        out = []
        for side_index, texts in enumerate((self.queries, self.corpus)):
            out.extend((side_index, lo, min(lo + batch_size, len(texts))) for lo in range(0, len(texts), batch_size))
        return out

    def texts(self, side_index: int) -> list[str]:
        return self.queries if side_index == 0 else self.corpus


def plan_task(index: int, name: str, row_indices: np.ndarray, rows: Sequence[TrainRow],
              pool: Sequence[str] | None = None) -> TaskPlan:
    """The plan of one task from its rows (in table order). A pool replaces the corpus; positives are
    added after it, so each has a score."""
    queries: dict[str, int] = {}
    corpus: dict[str, int] = {text: 0 for text in pool or ()}
    query_of_row = np.empty(len(rows), dtype=np.int32)
    positive_texts = []
    for i, row in enumerate(rows):
        query_of_row[i] = queries.setdefault(row.query, len(queries))
        corpus.update((text, 0) for text in row.pos if text not in corpus)
        if pool is None:
            corpus.update((text, 0) for text in row.neg if text not in corpus)
        positive_texts.append(row.pos)
    texts = list(corpus)
    position = {text: j for j, text in enumerate(texts)}
    return TaskPlan(index=index, task=name, row_indices=row_indices, queries=list(queries), query_of_row=query_of_row,
                    corpus=texts, positives=[[position[p] for p in pos] for pos in positive_texts])


def iter_task_plans(rows: Sequence[TrainRow], index: TableIndex,
                    candidate_pools: Mapping[str, Sequence[str]] | None = None) -> Iterator[TaskPlan]:
    """Each task's plan in turn, reading only that task's rows."""
    pools = candidate_pools or {}
    for t, (name, positions) in enumerate(index.tasks.items()):
        yield plan_task(t, name, positions, rows_at(rows, positions), pools.get(name))


# --------------------------------------------------------------------------- the embedding store


def shard_from_env() -> tuple[int, int]:
    """(this process's shard, number of shards): the torch.distributed group, else RANK/WORLD_SIZE, else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class EmbeddingStore:
    """Teacher vectors of one table under `base/<key>`: per task and shard one `.npy` (its units' vectors,
    in unit order), and a marker per finished shard. Keyed by teacher, rows fingerprint, candidate pools,
    unit size and dtype, so a vector on disk is always its text's vector in its unit."""

    def __init__(self, base: str | Path, teacher_id: str, fingerprint: str, batch_size: int, dtype: str,
                 candidate_pools: Mapping[str, Sequence[str]] | None = None) -> None:
        if dtype not in ("float16", "float32"):
            raise HarnessError(f"teacher pass: store dtype must be float16 or float32, got {dtype!r}")
        pools = None if candidate_pools is None else {t: list(p) for t, p in candidate_pools.items()}
        key = content_hash({"format": STORE_FORMAT, "teacher": teacher_id, "rows": fingerprint, "pools": pools,
                            "batch_size": batch_size, "dtype": dtype})
        self.folder = Path(base) / key[:16]
        self.dtype = dtype
        self.batch_size = batch_size

    def path(self, task_index: int, shard: int, n_shards: int) -> Path:
        return self.folder / f"task-{task_index:05d}.{shard:05d}-of-{n_shards:05d}.npy"

    def _marker(self, shard: int, n_shards: int) -> Path:
        return self.folder / f"shard-{shard:05d}-of-{n_shards:05d}.done"

    def complete(self, prefer: int = 1) -> int | None:
        """A shard count whose shards have all finished (`prefer` first), or None."""
        counts = [prefer] + sorted({int(p.name.split("-of-")[1][:5]) for p in self.folder.glob("shard-*-of-*.done")})
        for n in counts:
            if all(self._marker(s, n).is_file() for s in range(n)):
                return n
        return None

    def encode_task(self, plan: TaskPlan, embed: EmbedFn, shard: int = 0, n_shards: int = 1) -> int:
        """Encode this shard's units of one task (skipped if its file exists); returns the texts encoded."""
        if not 0 <= shard < n_shards:
            raise HarnessError(f"teacher pass: shard {shard} is not in [0, {n_shards})")
        mine = [u for k, u in enumerate(plan.units(self.batch_size)) if (plan.index + k) % n_shards == shard]
        final = self.path(plan.index, shard, n_shards)
        if not mine or final.is_file():
            return 0
        vectors = [_checked(embed(plan.texts(s)[lo:hi], SIDES[s]), SIDES[s], hi - lo).astype(self.dtype)
                   for s, lo, hi in mine]
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as handle:  # a handle: np.save would append ".npy" to the name
                np.save(handle, np.concatenate(vectors))
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return sum(hi - lo for _, lo, hi in mine)

    def finish(self, shard: int, n_shards: int) -> None:
        """Mark shard `shard` of `n_shards` done (every task encoded)."""
        from harness import atomic

        self.folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self._marker(shard, n_shards), "done\n")

    def task_vectors(self, plan: TaskPlan, n_shards: int) -> TaskVectors:
        return TaskVectors(self, plan, n_shards)


class TaskVectors:
    """One task's float32 vectors by (side, local index), read from its shards' memory-mapped files;
    the maps close when this object goes (mapped pages count as the process's memory while open)."""

    def __init__(self, store: EmbeddingStore, plan: TaskPlan, n_shards: int) -> None:
        self._store, self._plan, self._n = store, plan, n_shards
        self._maps: dict[int, np.ndarray] = {}
        filled = [0] * n_shards
        layout: dict[int, list[tuple[int, int, int]]] = {0: [], 1: []}
        for k, (side_index, lo, hi) in enumerate(plan.units(store.batch_size)):
            shard = (plan.index + k) % n_shards
            layout[side_index].append((lo, shard, filled[shard]))
            filled[shard] += hi - lo
        self._layout = {s: tuple(np.asarray(col, dtype=np.int64) for col in zip(*units, strict=True))
                        for s, units in layout.items() if units}

    def __call__(self, side: Side, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        side_index = SIDES.index(side)
        if side_index not in self._layout or not len(ids):
            return np.zeros((len(ids), 1), dtype=np.float32)
        starts, shards, locals_ = self._layout[side_index]
        unit = np.searchsorted(starts, ids, side="right") - 1
        shard_of, row_of = shards[unit], locals_[unit] + ids - starts[unit]
        out: np.ndarray | None = None
        for s in np.unique(shard_of).tolist():
            if s not in self._maps:
                path = self._store.path(self._plan.index, s, self._n)
                if not path.is_file():
                    raise HarnessError(f"{path}: teacher vectors missing (was shard {s + 1}/{self._n} run to the end?)")
                self._maps[s] = np.load(path, mmap_mode="r")
            data = self._maps[s]
            if out is None:
                out = np.empty((len(ids), data.shape[1]), dtype=np.float32)
            mask = shard_of == s
            out[mask] = data[row_of[mask]]
        assert out is not None
        return out


def _checked(vecs: Any, side: str, n: int) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != n:
        raise HarnessError(f"teacher embed({side!r}) returned shape {vecs.shape} for {n} texts; expected [n_texts, dim]")
    norms = np.linalg.norm(vecs, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-3):
        raise HarnessError(
            f"teacher embed({side!r}) must return L2-normalised vectors (norms {norms.min():.4f}.."
            f"{norms.max():.4f}); normalise inside the embed function"
        )
    return vecs


# --------------------------------------------------------------------------- exact search


def _order(values: Any, indices: Any, k: int) -> tuple[Any, Any]:
    """The first k of (values, indices) rows in (value descending, index ascending) order."""
    import torch

    by_index = torch.sort(indices, dim=1, stable=True)
    values = torch.gather(values, 1, by_index.indices)
    by_value = torch.sort(values, dim=1, descending=True, stable=True)
    indices = torch.gather(by_index.values, 1, by_value.indices)
    return by_value.values[:, :k], indices[:, :k]


def _block_top(scores: Any, k: int) -> tuple[Any, Any]:
    """Top-k of a [b, c] score block with ties at the cut resolved to the smaller corpus index."""
    import torch

    top = torch.topk(scores, k, dim=1, largest=True, sorted=True)
    values, indices = top.values, top.indices
    kth = values[:, -1:]
    ties = (scores == kth).sum(1)
    inside = (values == kth).sum(1)
    rows = torch.nonzero(ties > inside).flatten()  # rows where topk may have picked any of the tied items
    if len(rows):
        sub = scores[rows]
        greater = sub > kth[rows]
        equal = sub == kth[rows]
        room = k - greater.sum(1, keepdim=True)
        chosen = greater | (equal & (torch.cumsum(equal, 1) <= room))
        fixed = torch.nonzero(chosen)[:, 1].view(len(rows), k)
        indices = indices.clone()
        values = values.clone()
        indices[rows] = fixed
        values[rows] = torch.gather(sub, 1, fixed)
    return _order(values, indices, k)


def search_backend(n_corpus: int) -> str:
    """'faiss' for a corpus of at least FAISS_MIN_CORPUS items when faiss is installed, else 'torch'."""
    if n_corpus < FAISS_MIN_CORPUS:
        return "torch"
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "torch"
    return "faiss"


def _faiss_block_top(q: Any, c: Any, k: int) -> tuple[Any, Any]:
    """`_block_top` through faiss.knn. Asks for more neighbours than k until no row's tie at rank k
    runs past the last one returned, so every item tied with the k-th is among the candidates, then
    orders by (score, corpus index). FAISS's scores do not depend on k, so neither does the result."""
    import faiss
    import torch

    extra = min(k + 1, c.shape[0])
    q_np, c_np = q.numpy(), c.numpy()
    while True:
        scores, indices = faiss.knn(q_np, c_np, extra, metric=faiss.METRIC_INNER_PRODUCT)
        if extra >= c.shape[0] or not (scores[:, k - 1] == scores[:, extra - 1]).any():
            break
        extra = min(2 * extra, c.shape[0])
    return _order(torch.from_numpy(scores), torch.from_numpy(indices.astype(np.int64)), k)


def blocked_top_k(query_block: Callable[[int, int], np.ndarray], n_queries: int,
                  corpus_block: Callable[[int, int], np.ndarray], n_corpus: int,
                  k: int, backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k: (scores float32 [n, k], indices int32 [n, k]), best first,
    ties by corpus index. Vectors come from callables (lo, hi) -> float32 rows, so neither side
    needs to fit in memory; block sizes depend only on `n_corpus`. `backend`: 'torch' or 'faiss'
    (default: `search_backend(n_corpus)`)."""
    import torch

    backend = backend or search_backend(n_corpus)
    block_top = _faiss_block_top if backend == "faiss" else (lambda q, c, kk: _block_top(q @ c.T, kk))
    k = min(k, n_corpus)
    scores = np.empty((n_queries, k), dtype=np.float32)
    indices = np.empty((n_queries, k), dtype=np.int32)
    if k == 0 or n_queries == 0:
        return scores, indices
    c_block = min(n_corpus, CORPUS_BLOCK)
    q_block = max(1, min(4096, SCORE_BLOCK_ELEMENTS // c_block))
    single = n_corpus <= CORPUS_BLOCK
    corpus_t = torch.from_numpy(np.ascontiguousarray(corpus_block(0, n_corpus))) if single else None
    with torch.inference_mode():
        for qs in range(0, n_queries, q_block):
            q = torch.from_numpy(np.ascontiguousarray(query_block(qs, min(qs + q_block, n_queries))))
            best_v = best_i = None
            for cs in range(0, n_corpus, c_block):
                c = corpus_t if single else torch.from_numpy(np.ascontiguousarray(
                    corpus_block(cs, min(cs + c_block, n_corpus))))
                v, i = block_top(q, c, min(k, c.shape[0]))
                i = i + cs
                if best_v is None:
                    best_v, best_i = v, i
                else:
                    best_v, best_i = _order(torch.cat([best_v, v], 1), torch.cat([best_i, i], 1), k)
            scores[qs : qs + len(q)] = best_v.numpy()
            indices[qs : qs + len(q)] = best_i.numpy()
    return scores, indices


def exact_top_k(queries: np.ndarray, corpus: np.ndarray, k: int,
                backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`blocked_top_k` over two in-memory matrices."""
    queries = np.asarray(queries, dtype=np.float32)
    corpus = np.asarray(corpus, dtype=np.float32)
    return blocked_top_k(lambda lo, hi: queries[lo:hi], queries.shape[0],
                         lambda lo, hi: corpus[lo:hi], corpus.shape[0], k, backend)
