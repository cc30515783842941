"""The teacher pass and the cut work task by task (issue 17): the streamed, stored path gives what a
straightforward in-memory computation gives, shards give what one process gives, and memory follows
the largest task rather than the table."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from harness.data.filtering import (
    TaskRanking,
    TeacherRanking,
    apply_filter,
    cached_teacher_pass,
    cut_rows,
    encode_teacher_shard,
    rows_fingerprint,
)
from harness.data.mining import MiningRule
from harness.data.rows import TrainRow
from harness.data.table import RowTable, TableWriter, write_table


def hash_teacher(texts: list[str], side: str) -> np.ndarray:
    """A text's unit vector from its digest (and side): the same vector in any batch, so a reference
    that encodes each text alone sees exactly the pass's vectors."""
    out = []
    for text in texts:
        seed = int(hashlib.blake2b(f"{side}:{text}".encode(), digest_size=8).hexdigest(), 16)
        v = np.random.default_rng(seed).normal(size=16)
        out.append(v / np.linalg.norm(v))
    return np.asarray(out, dtype=np.float32)


def several_tasks() -> list[TrainRow]:
    """Three tasks in interleaved order, texts shared across tasks, duplicates within a task."""
    rows = []
    for i in range(90):
        task = ("alpha", "beta", "gamma")[i % 3]
        shared = f"shared passage {i % 10}"  # the same passage in every task
        query = f"question {i % 30}" if i % 4 else "the same question"  # a query repeated within tasks
        neg = [shared, f"{task} other {i}"]
        if i % 7 == 0:
            neg += [f"{task} answer {i}", shared]  # the positive and a repeat: discarded
        rows.append(TrainRow(query, [f"{task} answer {i}"], neg, task=task))
    return rows


POOLS = {"gamma": [f"pool item {k}" for k in range(25)] + ["shared passage 3"]}


def reference_ranking(rows: list[TrainRow], depth: int, pools: dict[str, list[str]]) -> TeacherRanking:
    """The teacher pass written plainly: every task's corpus and queries in memory, one numpy matmul."""
    tasks = {}
    for name in dict.fromkeys(r.task for r in rows):
        positions = np.asarray([i for i, r in enumerate(rows) if r.task == name], dtype=np.int64)
        mine = [rows[i] for i in positions]
        queries = list(dict.fromkeys(r.query for r in mine))
        if name in pools:
            corpus = list(dict.fromkeys([*pools[name], *(p for r in mine for p in r.pos)]))
        else:
            corpus = list(dict.fromkeys(t for r in mine for t in (*r.pos, *r.neg)))
        scores = hash_teacher(queries, "query") @ hash_teacher(corpus, "passage").T
        order = np.lexsort((np.tile(np.arange(len(corpus)), (len(queries), 1)), -scores), axis=1)[:, :depth]
        q_of_row = np.asarray([queries.index(r.query) for r in mine], dtype=np.int32)
        pos_ids = [[corpus.index(p) for p in r.pos] for r in mine]
        positive_score = np.asarray([scores[q, ids].max() for q, ids in zip(q_of_row, pos_ids, strict=True)],
                                    dtype=np.float32)
        positive_rank = np.asarray([min([list(order[q]).index(j) for j in ids if j in order[q]], default=order.shape[1])
                                    for q, ids in zip(q_of_row, pos_ids, strict=True)], dtype=np.int32)
        tasks[name] = TaskRanking(task=name, corpus=corpus, row_indices=positions, query_of_row=q_of_row,
                                  top_indices=order.astype(np.int32),
                                  top_scores=np.take_along_axis(scores, order, 1).astype(np.float32),
                                  positive_score=positive_score, positive_rank=positive_rank)
    return TeacherRanking(teacher_id="ref", depth=depth, key="ref", rows_fingerprint=rows_fingerprint(rows),
                          n_rows=len(rows), tasks=tasks)


def hardest_negatives(row: TrainRow, task: TaskRanking, line: int, n: int, rule: MiningRule) -> list[str]:
    """A kept row's negatives under a hardest-first rule, by hand: its own (cleaned), then ranked
    candidates the rule allows, best first."""
    own: list[str] = []
    for neg in row.neg:
        if neg not in (*row.pos, row.query) and neg not in own:
            own.append(neg)
    own = own[:n]
    q = task.query_of_row[line]
    lo, hi = rule.candidate_ranks(task.depth)
    ceiling = rule.ceilings(task.positive_score[line : line + 1])
    out = list(own)
    for j, score in zip(task.top_indices[q, lo:hi], task.top_scores[q, lo:hi], strict=True):
        text = task.corpus[j]
        if len(out) == n:
            break
        if text in (*row.pos, row.query, *own) or (ceiling is not None and not score < ceiling[0]):
            continue
        out.append(text)
    return out


RULES = [MiningRule("window", window=(2, 12)), MiningRule("window", window=(2, 12), sampling="hardest"),
         MiningRule("perc_pos", percent=0.9), MiningRule("margin_pos", margin=0.1, sampling="random")]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.method}-{r.sampling_used}")
def test_task_by_task_equals_the_in_memory_reference(tmp_path: Path, rule: MiningRule) -> None:
    rows = several_tasks()
    write_table(tmp_path / "rows.arrow", rows)
    table = RowTable(tmp_path / "rows.arrow")
    depth, top_k, negatives = 16, 3, 3
    ranking = cached_teacher_pass(table, hash_teacher, "hash", tmp_path / "cache", depth=depth, batch_size=7,
                                  candidate_pools=POOLS, show_progress=False)
    reference = reference_ranking(rows, depth, POOLS)
    assert list(ranking.tasks) == list(reference.tasks) == ["alpha", "beta", "gamma"]
    for name, expected in reference.tasks.items():
        got = ranking.tasks[name]  # loaded from disk
        assert got.corpus == expected.corpus
        for field in ("row_indices", "query_of_row", "top_indices", "positive_rank"):
            np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), err_msg=f"{name}.{field}")
        np.testing.assert_allclose(got.top_scores, expected.top_scores, atol=1e-6)
        np.testing.assert_allclose(got.positive_score, expected.positive_score, atol=1e-6)
    assert ranking.tasks["gamma"].corpus[:26] == POOLS["gamma"]

    cut, report = cut_rows(table, ranking, top_k=top_k, negatives=negatives, seed=5, rule=rule,
                           scratch=tmp_path / "cut")
    streamed = list(cut.rows(table))
    assert isinstance(cut.extra, np.memmap)  # the negatives were written to the scratch file
    kept, expected_report = apply_filter(rows, reference, top_k=top_k, negatives=negatives, seed=5, rule=rule)
    assert streamed == kept
    assert report["negatives"] == expected_report["negatives"] and report["dropped"] == expected_report["dropped"]
    assert 0 < len(kept) < len(rows) and report["negatives"]["mined"] > 0
    if rule.sampling_used == "hardest":  # deterministic: the negatives by hand
        position = {r.pos[0]: i for i, r in enumerate(rows)}  # every positive is unique here
        for row in kept:
            i = position[row.pos[0]]
            task = reference.tasks[row.task]
            line = int(np.flatnonzero(task.row_indices == i)[0])
            assert row.neg == hardest_negatives(rows[i], task, line, negatives, rule)


def test_two_shards_give_the_single_process_ranking(tmp_path: Path) -> None:
    rows = several_tasks()
    write_table(tmp_path / "rows.arrow", rows)
    table = RowTable(tmp_path / "rows.arrow")
    single = cached_teacher_pass(table, hash_teacher, "hash", tmp_path / "one", depth=16, batch_size=5,
                                 candidate_pools=POOLS, show_progress=False)
    first = encode_teacher_shard(table, hash_teacher, "hash", tmp_path / "two", 0, 2, batch_size=5,
                                 candidate_pools=POOLS, show_progress=False)
    assert not first["complete"] and first["texts_encoded"] > 0
    second = encode_teacher_shard(table, hash_teacher, "hash", tmp_path / "two", 1, 2, batch_size=5,
                                  candidate_pools=POOLS, show_progress=False)
    assert second["complete"] and second["texts_encoded"] > 0

    def refuse(texts: list[str], side: str) -> np.ndarray:
        raise AssertionError("the shards encoded everything")

    sharded = cached_teacher_pass(table, refuse, "hash", tmp_path / "two", depth=16, batch_size=5,
                                  candidate_pools=POOLS, show_progress=False)
    assert sharded.stats["shards"] == 2 and single.stats["shards"] == 1
    assert list(sharded.tasks) == list(single.tasks)
    for name, task in single.tasks.items():
        other = sharded.tasks[name]
        assert other.corpus == task.corpus
        for field in ("row_indices", "query_of_row", "top_indices", "top_scores", "positive_score", "positive_rank"):
            np.testing.assert_array_equal(getattr(other, field), getattr(task, field), err_msg=f"{name}.{field}")


def digest_teacher(texts: list[str], side: str) -> np.ndarray:
    """A fast stand-in teacher: a text's 16-dim unit vector from its blake2b digest."""
    raw = b"".join(hashlib.blake2b(f"{side}:{t}".encode(), digest_size=16).digest() for t in texts)
    vectors = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), 16).astype(np.float32) - 127.5
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _peak_bytes(folder: Path, n_rows: int, trace: bool = True) -> int:
    """Peak traced Python + numpy allocation of a cached teacher pass, the cut and writing the kept rows
    of an `n_rows` table in tasks of 50 rows (record batches of 100 rows, so the streamed batch is the
    same size in both tables)."""
    rows = [TrainRow(f"q {i} " + "w" * 300, [f"p {i} " + "w" * 300], [f"n {i} {k} " + "w" * 300 for k in range(3)],
                     task=f"t{i // 50}") for i in range(n_rows)]
    with TableWriter(folder / "rows.arrow", batch_rows=100) as writer:
        writer.extend(rows)
    fingerprint = rows_fingerprint(rows)
    del rows
    table = RowTable(folder / "rows.arrow")
    if trace:
        tracemalloc.start()
    try:
        ranking = cached_teacher_pass(table, digest_teacher, "hash", folder / "cache", depth=8, batch_size=64,
                                      show_progress=False, fingerprint=fingerprint)
        cut, _ = cut_rows(table, ranking, top_k=None, negatives=5, window=(1, 8), fingerprint=fingerprint,
                          scratch=folder / "cut")
        written = sum(1 for _ in cut.rows(table))
        assert written == n_rows
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # ~15 s on an idle 2-core CPU (tracemalloc slows every allocation)
def test_memory_follows_the_largest_task_not_the_table(tmp_path: Path) -> None:
    """Ten times the rows (same task size) must not take anywhere near ten times the memory: what grows
    with the table is a few numpy arrays of O(rows) numbers, never its texts (~1.5 KB a row here)."""
    _peak_bytes(tmp_path / "warm-up", 100, trace=False)  # imports (torch, pyarrow compute): not measured
    small = _peak_bytes(tmp_path / "small", 200)
    large = _peak_bytes(tmp_path / "large", 2_000)
    assert large < 2.5 * small, (small, large)  # measured: x1.7 (holding the texts would be x10)
