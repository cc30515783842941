"""KaLM's ranking-consistency filtering and hard-negative mining, split around a cached teacher pass.

The teacher pass (encode every query and corpus text, exact top-`depth` inner-product search) is
the expensive part; the threshold is a cheap cut on its output. So the two are separate:

- `teacher_pass` / `cached_teacher_pass` produce a `TeacherRanking`, stored on disk under
  `cache_dir/rankings/<ranking_key>` and keyed by (teacher id, rows, depth): every filtering
  threshold of an ablation reuses one pass.
- `apply_filter` cuts at `top_k`, mines hard negatives with a rule (harness.data.mining: KaLM's rank
  window, or NV-Retriever's positive-aware score ceilings) and returns the kept rows plus a report
  for the data card. Every rule and parameter value is a cut on the same ranking.

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

Search backend: blocked torch matmul + `topk` (blocks of queries, a [block, corpus] score matrix of
at most ~64M floats). Chosen by measurement (bench/bench_filtering.py, idle 2-core CPU, 2000
queries, top-128, identical results): torch 0.14 s / 0.60 s / 1.14 s vs FAISS `IndexFlatIP`
(KaLM's choice) 0.10 s / 0.44 s / 0.92 s for corpora of 10k x 384, 50k x 384, 50k x 896 dims.
FAISS searches 1.2-1.5x faster, but search is under 0.1% of a teacher pass (encoding dominates:
1500 rows took 28.8 s to encode and 0.02 s to search), so torch — already a dependency — it is.
FAISS would pay off on GPUs with multi-million-item corpora, which this harness does not target.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness import atomic
from harness.data.mining import MiningRule, relative_scores
from harness.data.rows import TrainRow
from harness.errors import HarnessError
from harness.hashing import canonical_json, content_hash

Side = Literal["query", "passage"]
EmbedFn = Callable[[list[str], Side], np.ndarray]

RANKING_FORMAT = 1
META_FILE = "ranking.json"
# Budget for one block of the [queries, corpus] score matrix (float32 elements, ~256 MB).
SCORE_BLOCK_ELEMENTS = 64 * 1024 * 1024

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


@dataclass
class TeacherRanking:
    teacher_id: str
    depth: int  # requested depth; a task's own depth is min(depth, corpus size)
    key: str
    rows_fingerprint: str
    n_rows: int
    tasks: dict[str, TaskRanking]
    stats: dict[str, Any] = field(default_factory=dict)  # texts encoded, seconds spent


# --------------------------------------------------------------------------- keys


def rows_fingerprint(rows: Sequence[TrainRow]) -> str:
    """sha256 over the rows' (task, query, pos, neg), streamed so large tables never become one string."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(canonical_json([row.task, row.query, row.pos, row.neg]).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def ranking_key(
    teacher_id: str,
    rows: Sequence[TrainRow],
    depth: int,
    candidate_pools: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Cache key of a teacher pass: teacher id + the rows' (task, query, pos, neg) + depth (+ pools)."""
    pools = None if candidate_pools is None else {t: list(p) for t, p in candidate_pools.items()}
    return content_hash({
        "format": RANKING_FORMAT,
        "teacher": teacher_id,
        "depth": depth,
        "rows": rows_fingerprint(rows),
        "pools": pools,
    })


# --------------------------------------------------------------------------- teacher pass


def teacher_pass(
    rows: Sequence[TrainRow],
    embed: EmbedFn,
    *,
    depth: int = 128,
    batch_size: int = 256,
    show_progress: bool = True,
    teacher_id: str = "",
    candidate_pools: Mapping[str, Sequence[str]] | None = None,
) -> TeacherRanking:
    """Encode each task's unique queries and corpus once, then exact top-`depth` search per task.

    `embed(texts, side)` must return L2-normalised float32 vectors; query texts are passed as they
    are in the rows (a caller wanting instructions applies them inside `embed`).
    `candidate_pools` (task -> texts) replaces a task's corpus, as KaLM's `--candidate_pool`.
    """
    from tqdm.auto import tqdm

    if depth < 1:
        raise HarnessError(f"teacher pass: depth must be >= 1, got {depth}")
    if not rows:
        raise HarnessError("teacher pass: no rows to rank")
    by_task: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_task.setdefault(row.task, []).append(i)

    plans = {task: _plan_task(rows, idx, (candidate_pools or {}).get(task)) for task, idx in by_task.items()}
    # Tasks are encoded one at a time (memory stays per task); a text shared by several tasks is
    # remembered after its first encoding, so every (side, text) reaches the teacher once.
    seen: dict[Side, Counter[str]] = {"query": Counter(), "passage": Counter()}
    for plan in plans.values():
        seen["query"].update(plan["queries"])
        seen["passage"].update(plan["corpus"])
    shared: dict[Side, dict[str, np.ndarray | None]] = {
        side: {t: None for t, c in counts.items() if c > 1} for side, counts in seen.items()
    }
    total = len(seen["query"]) + len(seen["passage"])
    stats: dict[str, Any] = {"texts_encoded": total, "encode_seconds": 0.0, "search_seconds": 0.0}
    tasks: dict[str, TaskRanking] = {}
    with tqdm(total=total, desc="teacher pass", unit="text", disable=not show_progress) as bar:
        for task, plan in plans.items():
            start = time.perf_counter()
            query_vecs = _encode(plan["queries"], "query", embed, batch_size, bar, shared["query"])
            corpus_vecs = _encode(plan["corpus"], "passage", embed, batch_size, bar, shared["passage"])
            stats["encode_seconds"] += time.perf_counter() - start
            start = time.perf_counter()
            tasks[task] = _rank_task(task, plan, query_vecs, corpus_vecs, depth)
            stats["search_seconds"] += time.perf_counter() - start
    return TeacherRanking(
        teacher_id=teacher_id,
        depth=depth,
        key=ranking_key(teacher_id, rows, depth, candidate_pools),
        rows_fingerprint=rows_fingerprint(rows),
        n_rows=len(rows),
        tasks=tasks,
        stats=stats,
    )


def _plan_task(rows: Sequence[TrainRow], row_indices: list[int], pool: Sequence[str] | None) -> dict[str, Any]:
    """Unique queries and corpus texts of one task, in first-appearance order (reproducible)."""
    queries: dict[str, int] = {}
    for i in row_indices:
        queries.setdefault(rows[i].query, len(queries))
    texts: list[str] = []
    if pool is not None:
        texts.extend(pool)
    for i in row_indices:
        texts.extend(rows[i].pos)
        if pool is None:
            texts.extend(rows[i].neg)
    corpus = list(dict.fromkeys(texts))
    return {
        "row_indices": np.asarray(row_indices, dtype=np.int64),
        "queries": list(queries),
        "query_of_row": np.asarray([queries[rows[i].query] for i in row_indices], dtype=np.int32),
        "corpus": corpus,
        "corpus_index": {t: j for j, t in enumerate(corpus)},
        "positives": [rows[i].pos for i in row_indices],
    }


def _encode(texts: list[str], side: Side, embed: EmbedFn, batch_size: int, bar: Any,
            shared: dict[str, np.ndarray | None]) -> np.ndarray:
    """Vectors of `texts`, calling `embed` in chunks only for texts not already in `shared`.

    `shared` holds the texts used by several tasks (None until first encoded).
    """
    todo = [t for t in texts if shared.get(t) is None]
    fresh = _embed_chunks(todo, side, embed, batch_size, bar)
    vectors = dict(zip(todo, fresh))
    for t in todo:
        if t in shared:
            shared[t] = vectors[t]
    if len(todo) == len(texts):
        return fresh
    return np.stack([vectors[t] if t in vectors else shared[t] for t in texts])


def _embed_chunks(texts: list[str], side: Side, embed: EmbedFn, batch_size: int, bar: Any) -> np.ndarray:
    chunks: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        vecs = np.asarray(embed(chunk, side), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(chunk):
            raise HarnessError(
                f"teacher embed({side!r}) returned shape {vecs.shape} for {len(chunk)} texts; "
                "expected [n_texts, dim]"
            )
        norms = np.linalg.norm(vecs, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise HarnessError(
                f"teacher embed({side!r}) must return L2-normalised vectors (norms {norms.min():.4f}.."
                f"{norms.max():.4f}); normalise inside the embed function"
            )
        chunks.append(vecs)
        bar.update(len(chunk))
    return np.concatenate(chunks) if chunks else np.zeros((0, 1), dtype=np.float32)


def exact_top_k(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k: (scores float32 [n, k], indices int32 [n, k]), best first.

    Blocked torch matmul + topk: blocks of queries keep the score matrix under
    SCORE_BLOCK_ELEMENTS whatever the corpus size.
    """
    import torch

    k = min(k, corpus.shape[0])
    corpus_t = torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))
    block = max(1, min(4096, SCORE_BLOCK_ELEMENTS // max(1, corpus.shape[0])))
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    indices = np.empty((queries.shape[0], k), dtype=np.int32)
    with torch.inference_mode():
        for start in range(0, queries.shape[0], block):
            q = torch.from_numpy(np.ascontiguousarray(queries[start : start + block], dtype=np.float32))
            top = torch.topk(q @ corpus_t.T, k, dim=1, largest=True, sorted=True)
            scores[start : start + block] = top.values.numpy()
            indices[start : start + block] = top.indices.numpy()
    return scores, indices


def _rank_task(task: str, plan: dict[str, Any], query_vecs: np.ndarray, corpus_vecs: np.ndarray,
               depth: int) -> TaskRanking:
    top_scores, top_indices = exact_top_k(query_vecs, corpus_vecs, depth)
    index = plan["corpus_index"]
    query_of_row = plan["query_of_row"]
    # Best positive per row: score every (row, positive) pair, then max within each row.
    pos_lists = [[index[p] for p in pos] for pos in plan["positives"]]
    counts = np.asarray([len(p) for p in pos_lists], dtype=np.int64)
    flat_pos = np.fromiter((j for p in pos_lists for j in p), dtype=np.int64, count=int(counts.sum()))
    pair_rows = np.repeat(np.arange(len(pos_lists)), counts)
    pair_scores = np.einsum("ij,ij->i", query_vecs[query_of_row[pair_rows]], corpus_vecs[flat_pos])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    positive_score = np.maximum.reduceat(pair_scores, starts).astype(np.float32)
    positive_rank = _best_positive_rank(top_indices, query_of_row, pos_lists)
    return TaskRanking(
        task=task,
        corpus=plan["corpus"],
        row_indices=plan["row_indices"],
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


def save_ranking(ranking: TeacherRanking, folder: str | Path) -> Path:
    """One npz of arrays + one parquet of corpus texts per task, and a JSON index; written atomically."""
    import pandas as pd

    folder = Path(folder)
    names = list(ranking.tasks)
    with atomic.staged_dir(folder) as tmp:
        for i, name in enumerate(names):
            task = ranking.tasks[name]
            np.savez(
                tmp / f"task_{i:04d}.npz",
                row_indices=task.row_indices,
                query_of_row=task.query_of_row,
                top_indices=task.top_indices,
                top_scores=task.top_scores,
                positive_score=task.positive_score,
                positive_rank=task.positive_rank,
            )
            pd.DataFrame({"text": task.corpus}).to_parquet(tmp / f"task_{i:04d}.corpus.parquet", index=False)
        atomic.write_json(tmp / META_FILE, {
            "format": RANKING_FORMAT,
            "teacher_id": ranking.teacher_id,
            "depth": ranking.depth,
            "key": ranking.key,
            "rows_fingerprint": ranking.rows_fingerprint,
            "n_rows": ranking.n_rows,
            "tasks": names,
            "stats": ranking.stats,
        })
    return folder


def load_ranking(folder: str | Path) -> TeacherRanking:
    import pandas as pd

    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise HarnessError(f"{folder}: not a teacher ranking (no {META_FILE})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != RANKING_FORMAT:
        raise HarnessError(f"{meta_path}: ranking format {meta.get('format')!r}, this harness reads {RANKING_FORMAT}")
    tasks: dict[str, TaskRanking] = {}
    for i, name in enumerate(meta["tasks"]):
        with np.load(folder / f"task_{i:04d}.npz", allow_pickle=False) as arrays:
            parts = {k: arrays[k] for k in arrays.files}
        corpus = pd.read_parquet(folder / f"task_{i:04d}.corpus.parquet")["text"].tolist()
        tasks[name] = TaskRanking(task=name, corpus=corpus, **parts)
    return TeacherRanking(
        teacher_id=meta["teacher_id"],
        depth=int(meta["depth"]),
        key=meta["key"],
        rows_fingerprint=meta["rows_fingerprint"],
        n_rows=int(meta["n_rows"]),
        tasks=tasks,
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
) -> TeacherRanking:
    """`teacher_pass` once per (teacher id, rows, depth): later calls load `cache_dir/rankings/<key>`.

    `cache_dir` defaults to `harness.paths.cache_root()`. The teacher is only called on a miss.
    """
    if cache_dir is None:
        from harness.paths import cache_root

        cache_dir = cache_root()
    key = ranking_key(teacher_id, rows, depth, candidate_pools)
    folder = Path(cache_dir) / "rankings" / key
    if (folder / META_FILE).is_file():
        ranking = load_ranking(folder)
        ranking.stats = {**ranking.stats, "cache": "hit"}
        return ranking
    ranking = teacher_pass(rows, embed, depth=depth, batch_size=batch_size, show_progress=show_progress,
                           teacher_id=teacher_id, candidate_pools=candidate_pools)
    save_ranking(ranking, folder)
    ranking.stats = {**ranking.stats, "cache": "miss"}
    return ranking


# --------------------------------------------------------------------------- the cut


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

    `rule` says which ranked candidates may be mined (harness.data.mining; default: KaLM's `window`).
    Report (for the data card): rows before/after, dropped rows by reason, rows kept without a test
    (filter off, or a corpus of at most `top_k` items), where the negatives came from
    (`existing` / `mined` / `padding`; `missing` when a corpus is too small to fill every slot;
    `existing_discarded` counts given negatives equal to a positive, the query or an earlier one),
    and per task what the rule did (`mining`): ranked candidates it screened (not a positive, the
    query or an existing negative), how many it removed as likely false negatives, and the teacher
    scores of the mined negatives relative to their row's positive (ratio and margin quantiles).
    """
    rule = rule or MiningRule(window=window)
    lo, hi = rule.window
    if not 0 <= lo < hi:
        raise HarnessError(f"hard-negative window {rule.window}: need 0 <= lo < hi")
    if negatives < 0:
        raise HarnessError(f"negatives must be >= 0, got {negatives}")
    if top_k is not None and top_k < 0:
        raise HarnessError(f"top_k must be >= 0 or None, got {top_k}")
    if len(rows) != ranking.n_rows or rows_fingerprint(rows) != ranking.rows_fingerprint:
        raise HarnessError(
            f"teacher ranking {ranking.key} was computed for other rows ({ranking.n_rows} rows); "
            "run the teacher pass on exactly these rows"
        )

    kept_rows: dict[int, TrainRow] = {}
    per_task: dict[str, dict[str, Any]] = {}
    all_scores: list[np.ndarray] = []
    for name, task in ranking.tasks.items():
        keep, reasons = _cut(task, top_k)
        new_negs, neg_counts, screened, scores = _mine_negatives(rows, task, keep, negatives, rule, seed)
        for position in np.flatnonzero(keep):
            row_index = int(task.row_indices[position])
            kept_rows[row_index] = replace(rows[row_index], neg=new_negs[position])
        all_scores.append(scores)
        per_task[name] = {
            "corpus_size": len(task.corpus),
            "rows_before": len(task.row_indices),
            "rows_after": int(keep.sum()),
            **reasons,
            "negatives": neg_counts,
            "mining": {**screened, **relative_scores(scores[:, 0], scores[:, 1])},
        }
    out = [kept_rows[i] for i in sorted(kept_rows)]
    scores = np.concatenate(all_scores) if all_scores else np.zeros((0, 2))
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
        "rows_after": len(out),
        "dropped": _sum_counts(t["dropped"] for t in per_task.values()),
        "kept_unfiltered": _sum_counts(t["kept_unfiltered"] for t in per_task.values()),
        "negatives": _sum_counts(t["negatives"] for t in per_task.values()),
        "mining": {**_sum_counts({k: v for k, v in t["mining"].items() if k in SCREEN_COUNTS}
                                 for t in per_task.values()),
                   **relative_scores(scores[:, 0], scores[:, 1])},
        "tasks": per_task,
    }
    return out, report


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


def _mine_negatives(rows: Sequence[TrainRow], task: TaskRanking, keep: np.ndarray, n: int, rule: MiningRule,
                    seed: int, chunk: int = 8192
                    ) -> tuple[dict[int, list[str]], dict[str, int], dict[str, int], np.ndarray]:
    """Negatives for the kept rows of one task: existing first, then ranked candidates the rule allows,
    then random padding. Also returns the rule's screening counts and, per mined negative, its
    (teacher score, its row's positive score) [m, 2]."""
    counts = {"existing": 0, "mined": 0, "padding": 0, "missing": 0, "existing_discarded": 0}
    screened = dict.fromkeys(SCREEN_COUNTS, 0)
    kept_positions = np.flatnonzero(keep)
    pairs: list[tuple[float, float]] = []
    if n == 0:
        return {int(p): [] for p in kept_positions}, counts, screened, np.zeros((0, 2))
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
    priority = np.random.default_rng([seed, task_seed]).random((len(task.row_indices), slots_all.shape[1]))
    ceilings = rule.ceilings(task.positive_score)
    hardest = rule.sampling_used == "hardest"

    result: dict[int, list[str]] = {}
    for start in range(0, len(kept_positions), chunk):
        positions = kept_positions[start : start + chunk]
        existing, excluded = [], []
        for position in positions:
            row = rows[int(task.row_indices[position])]
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
        rank_or_draw = np.broadcast_to(np.arange(slots.shape[1]), slots.shape) if hardest else priority[positions]
        order = np.argsort(np.where(eligible, rank_or_draw, np.inf), axis=1, kind="stable")
        for i, position in enumerate(positions):
            negs = existing[i]
            counts["existing"] += len(negs)
            need = n - len(negs)
            if need > 0:
                chosen = sorted(j for j in order[i, :need] if eligible[i, j])  # hardest first
                negs.extend(corpus[slots[i, j]] for j in chosen)
                pairs.extend((float(scores[i, j]), float(task.positive_score[position])) for j in chosen)
                counts["mined"] += len(chosen)
                need -= len(chosen)
            if need > 0:
                # padding never picks what the rule removed as a likely false negative (the window's
                # skipped ranks stay eligible for padding, as in KaLM)
                blocked = set(excluded[i].tolist()) | {index[t] for t in negs if t in index} | \
                    {int(j) for j in slots[i][removed[i]]}
                padding = _random_corpus_items(len(corpus), need, blocked, [seed, task_seed, int(position)])
                negs.extend(corpus[j] for j in padding)
                counts["padding"] += len(padding)
                counts["missing"] += need - len(padding)
            result[int(position)] = negs
    return result, counts, screened, np.asarray(pairs, dtype=np.float64).reshape(-1, 2)


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
