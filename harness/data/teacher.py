"""The teacher pass at scale: plan, sharded encoding into float16 memory-maps, blocked exact search.

1. **Plan** (one streaming pass over the rows): per task, its rows, unique queries and corpus
   (first-appearance order, as `filtering` documents); every distinct (side, text) gets one global
   id, and the texts are cut into *encoding units* of `batch_size` texts, task by task, queries
   then passages. A unit is one call of the teacher, so a text's vector depends only on its unit,
   never on how many processes share the work.
2. **Encode** (sharded): process `s` of `n` encodes units `u` with `u % n == s` and writes one
   float16 `.npy` per side (memory-mapped, written to a temp name and renamed when complete) into
   a folder keyed by the teacher and the units' texts. Ranks of a torchrun group, or N executor
   jobs, each write their own files; nothing is gathered over the network.
3. **Search** (one process, per task): exact inner-product top-`depth`, in blocks of queries x
   corpus read from the memory-maps (never the whole corpus in memory), merged block by block.
   Order is (score descending, corpus index ascending), ties included, and block sizes depend only
   on the corpus size, so the list for depth d is the prefix of the list for any larger depth and
   the result is the same for any number of shards. ("Equal" is equal float32 scores: two copies
   of one vector may score a last bit apart depending on where they sit in the matmul's tiles;
   that too is fixed by the data, never by depth or shards.)

float16 (from FLOAT16_FROM_TEXTS distinct texts on) halves the disk and page-cache footprint of
the vectors (a 10M x 896 corpus is 18 GB, not 36); scores are computed in float32 from the stored
values, so every process sees the same numbers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.data.rows import TrainRow
from harness.errors import HarnessError
from harness.hashing import canonical_json

Side = Literal["query", "passage"]
SIDES: tuple[Side, Side] = ("query", "passage")
EmbedFn = Callable[[list[str], Side], np.ndarray]

STORE_FORMAT = 1
# Vectors are stored float16 from this many distinct texts on (float32 below): float16 halves the
# store at KaLM scale, while small passes (the quickstart, every test) keep the float32 vectors and
# so exactly the rankings, mined negatives and trained weights they always had. The choice depends
# on the texts only, never on shards or depth.
FLOAT16_FROM_TEXTS = 1_000_000
# Budget for one block of the [queries, corpus] score matrix (float32 elements, ~256 MB).
SCORE_BLOCK_ELEMENTS = 64 * 1024 * 1024
CORPUS_BLOCK = 65_536  # corpus vectors per search block
# FAISS (IndexFlatIP's exact kernel, `faiss.knn`) searches corpora from this size on, when installed
# (`pip install harness[faiss]`); below it, and without FAISS, torch. Both are exact, both order by
# (score, corpus index); they may differ in the last float bit of a score, so the backend a ranking
# used is recorded in its stats. The choice depends on the corpus size only.
FAISS_MIN_CORPUS = 1_000_000


@dataclass
class TaskPlan:
    task: str
    row_indices: np.ndarray  # int64 [n_rows]: positions of this task's rows in the table
    queries: list[str]  # unique queries, first appearance
    query_of_row: np.ndarray  # int32 [n_rows]
    corpus: list[str]  # unique corpus texts (pool first, if any), first appearance
    positives: list[list[int]]  # per row: corpus indices of its positives
    query_ids: np.ndarray  # int64 [n_queries]: global ids (side "query")
    corpus_ids: np.ndarray  # int64 [n_corpus]: global ids (side "passage")


@dataclass
class Plan:
    tasks: dict[str, TaskPlan]
    texts: dict[str, list[str]]  # side -> distinct texts in global id order
    units: list[tuple[int, int, int]]  # (side index, first global id, end global id), encoding order
    rows_fingerprint: str
    n_rows: int
    batch_size: int

    def store_dtype(self) -> str:
        return "float16" if sum(len(t) for t in self.texts.values()) >= FLOAT16_FROM_TEXTS else "float32"

    def store_key(self, teacher_id: str, dtype: str) -> str:
        """Teacher + the exact texts of every unit (so a cached vector is always this text's vector)."""
        digest = hashlib.sha256(canonical_json({"format": STORE_FORMAT, "teacher": teacher_id, "dtype": dtype,
                                                "batch_size": self.batch_size}).encode("utf-8"))
        for side_index, start, end in self.units:
            digest.update(canonical_json([side_index, self.texts[SIDES[side_index]][start:end]]).encode("utf-8"))
        return digest.hexdigest()[:16]


class RowsDigest:
    """The rows' fingerprint (sha256 over each row's canonical [task, query, pos, neg]), fed row by row,
    so whoever streams the rows anyway (the mix writer, the plan) hashes them on the way."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, row: TrainRow) -> None:
        self._digest.update(canonical_json([row.task, row.query, row.pos, row.neg]).encode("utf-8"))
        self._digest.update(b"\n")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def plan_teacher_pass(rows: Iterable[TrainRow], candidate_pools: Mapping[str, Sequence[str]] | None = None,
                      batch_size: int = 256, *, fingerprint: str | None = None) -> Plan:
    """One pass over `rows` (a list or a memory-mapped table): tasks, unique texts, units, fingerprint.

    The rows are hashed (`filtering.rows_fingerprint`) only when `fingerprint` is not given.
    """
    pools = candidate_pools or {}
    building: dict[str, dict[str, Any]] = {}
    digest = None if fingerprint else RowsDigest()
    n_rows = 0
    for i, row in enumerate(rows):
        n_rows += 1
        if digest is not None:
            digest.add(row)
        task = building.get(row.task)
        if task is None:
            pool = pools.get(row.task)
            task = building[row.task] = {"rows": [], "queries": {}, "query_of_row": [], "pool": pool is not None,
                                         "corpus": dict.fromkeys(pool or ()), "positives": []}
        task["rows"].append(i)
        queries = task["queries"]
        task["query_of_row"].append(queries.setdefault(row.query, len(queries)))
        corpus = task["corpus"]
        positives = []
        for text in row.pos:
            if text not in corpus:
                corpus[text] = None
            positives.append(text)
        if not task["pool"]:
            for text in row.neg:
                if text not in corpus:
                    corpus[text] = None
        task["positives"].append(positives)

    ids: dict[str, dict[str, int]] = {"query": {}, "passage": {}}
    texts: dict[str, list[str]] = {"query": [], "passage": []}
    units: list[tuple[int, int, int]] = []
    tasks: dict[str, TaskPlan] = {}
    for name, task in building.items():
        queries = list(task["queries"])
        corpus = list(task["corpus"])
        side_ids = {}
        for side_index, (side, side_texts) in enumerate((("query", queries), ("passage", corpus))):
            known, everything = ids[side], texts[side]
            start = len(everything)
            for text in side_texts:
                if text not in known:
                    known[text] = len(everything)
                    everything.append(text)
            units.extend((side_index, lo, min(lo + batch_size, len(everything)))
                         for lo in range(start, len(everything), batch_size))
            side_ids[side] = np.fromiter((known[t] for t in side_texts), dtype=np.int64, count=len(side_texts))
        index = {t: j for j, t in enumerate(corpus)}
        tasks[name] = TaskPlan(
            task=name,
            row_indices=np.asarray(task["rows"], dtype=np.int64),
            queries=queries,
            query_of_row=np.asarray(task["query_of_row"], dtype=np.int32),
            corpus=corpus,
            positives=[[index[p] for p in pos] for pos in task["positives"]],
            query_ids=side_ids["query"],
            corpus_ids=side_ids["passage"],
        )
    return Plan(tasks=tasks, texts=texts, units=units, n_rows=n_rows,
                rows_fingerprint=fingerprint or digest.hexdigest(),  # type: ignore[union-attr]
                batch_size=batch_size)


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
    """Teacher vectors of one plan under `base/<store key>`: per side and shard, one `.npy` (memory-mapped)."""

    def __init__(self, base: str | Path, plan: Plan, teacher_id: str, dtype: str | None = None) -> None:
        self.dtype = dtype or plan.store_dtype()
        if self.dtype not in ("float16", "float32"):
            raise HarnessError(f"teacher pass: store dtype must be float16 or float32, got {self.dtype!r}")
        self.folder = Path(base) / plan.store_key(teacher_id, self.dtype)
        self.plan = plan
        self._maps: dict[tuple[str, int], Any] = {}
        self._layout: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.n_shards: int | None = None

    def path(self, side: str, shard: int, n_shards: int) -> Path:
        return self.folder / f"{side}.{shard:05d}-of-{n_shards:05d}.npy"

    def shard_done(self, shard: int, n_shards: int) -> bool:
        return all(self.path(side, shard, n_shards).is_file() for side in SIDES)

    def complete(self, prefer: int = 1) -> int | None:
        """A shard count whose files are all present (`prefer` first), or None."""
        counts = [prefer] + sorted({int(p.name.split("-of-")[1][:5]) for p in self.folder.glob("query.*-of-*.npy")})
        for n in counts:
            if all(self.shard_done(s, n) for s in range(n)):
                return n
        return None

    def encode(self, embed: EmbedFn, shard: int = 0, n_shards: int = 1, *, bar: Any = None) -> int:
        """Encode this shard's units (skipped if its files exist); returns the texts it encoded."""
        if not 0 <= shard < n_shards:
            raise HarnessError(f"teacher pass: shard {shard} is not in [0, {n_shards})")
        if self.shard_done(shard, n_shards):
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        encoded = 0
        for side_index, side in enumerate(SIDES):
            mine = [(lo, hi) for u, (s, lo, hi) in enumerate(self.plan.units) if s == side_index and u % n_shards == shard]
            total = sum(hi - lo for lo, hi in mine)
            final = self.path(side, shard, n_shards)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            out = None
            row = 0
            try:
                for lo, hi in mine:
                    vecs = _checked(embed(self.plan.texts[side][lo:hi], side), side, hi - lo)
                    if out is None:
                        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=(total, vecs.shape[1]))
                    out[row : row + len(vecs)] = vecs
                    row += len(vecs)
                    if bar is not None:
                        bar.update(len(vecs))
                if out is None:  # no unit of this side here; a file handle, or np.save appends ".npy"
                    with tmp.open("wb") as handle:
                        np.save(handle, np.zeros((0, 0), dtype=self.dtype))
                else:
                    out.flush()
                    del out
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            encoded += total
        return encoded

    def _side_layout(self, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per unit of `side`: first global id, shard, row of that first id in the shard's file."""
        if side not in self._layout:
            n = self.n_shards or 1
            side_index = SIDES.index(side)
            starts, shards, locals_ = [], [], []
            filled = [0] * n
            for u, (s, lo, hi) in enumerate(self.plan.units):
                if s != side_index:
                    continue
                starts.append(lo)
                shards.append(u % n)
                locals_.append(filled[u % n])
                filled[u % n] += hi - lo
            self._layout[side] = (np.asarray(starts, dtype=np.int64), np.asarray(shards, dtype=np.int64),
                                  np.asarray(locals_, dtype=np.int64))
        return self._layout[side]

    def open(self, n_shards: int) -> None:
        self.n_shards = n_shards
        self._maps.clear()
        self._layout.clear()

    def vectors(self, side: str, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of global ids `ids` (any order), read from the memory-mapped shards."""
        if self.n_shards is None:
            raise HarnessError(f"{self.folder}: embedding store not opened")
        starts, shards, locals_ = self._side_layout(side)
        ids = np.asarray(ids, dtype=np.int64)
        unit = np.searchsorted(starts, ids, side="right") - 1
        shard_of = shards[unit]
        row_of = locals_[unit] + ids - starts[unit]
        out: np.ndarray | None = None
        for s in np.unique(shard_of):
            key = (side, int(s))
            if key not in self._maps:
                self._maps[key] = np.load(self.path(side, int(s), self.n_shards), mmap_mode="r")
            data = self._maps[key]
            if out is None:
                out = np.empty((len(ids), data.shape[1]), dtype=np.float32)
            mask = shard_of == s
            out[mask] = data[row_of[mask]]
        return out if out is not None else np.zeros((0, 1), dtype=np.float32)


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
