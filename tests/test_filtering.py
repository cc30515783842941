"""Ranking-consistency filtering and hard-negative mining (harness.data.filtering).

A hand-checked toy (2-D unit vectors at chosen angles, so every ranking is known), properties on a
larger synthetic task, the one-teacher-pass-per-ablation guarantee, and a real MiniLM run on
Python stdlib docstring -> function rows.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.data.filtering import (
    apply_filter,
    cached_teacher_pass,
    load_ranking,
    ranking_key,
    save_ranking,
    teacher_pass,
)
from harness.data.mining import MiningRule
from harness.data.rows import TrainRow
from harness.errors import HarnessError

# --------------------------------------------------------------------------- the hand-checked toy

# Passage angles (degrees). Task "toy" corpus = unique pos+neg texts in first-appearance order:
# A, C, D, F, B, E.
PASSAGE_ANGLE = {"A": 0, "B": 10, "C": 20, "D": 30, "E": 40, "F": 55, "X": 90, "Y": 100}
# Query-side angles (a query text may also be a passage text, with a different query-side vector).
QUERY_ANGLE = {"q0": 0, "q1": 1, "q2": 24, "q3": 50, "E": 32, "t0": 90, "t1": 100}


def angle_teacher(texts: list[str], side: str) -> np.ndarray:
    table = QUERY_ANGLE if side == "query" else PASSAGE_ANGLE
    rad = np.deg2rad([table[t] for t in texts])
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def toy_rows() -> list[TrainRow]:
    return [
        # q0 at 0:  A0 B10 C20 D30 E40 F55 -> ranks A,B,C,D,E,F; positive A at rank 0.
        TrainRow("q0", ["A"], ["C"], task="toy"),
        # q1 at 1:  same order; positive D at rank 3 -> below rank 2 (C) -> dropped at top_k=2.
        TrainRow("q1", ["D"], ["F"], task="toy"),
        # q2 at 24: C4 D6 B14 E16 A24 F31 -> ranks C,D,B,E,A,F; positive B *is* rank 2 -> kept.
        TrainRow("q2", ["B"], [], task="toy"),
        # q3 at 50: F5 E10 D20 C30 B40 A50 -> ranks F,E,D,C,B,A; best positive E at rank 1.
        TrainRow("q3", ["A", "E"], [], task="toy"),
        # query text "E" (query side at 32): D2 E8 C12 B22 F23 A32 -> ranks D,E,C,B,F,A; positive D rank 0.
        TrainRow("E", ["D"], [], task="toy"),
        # Task "tiny": corpus X, Y (2 items, <= top_k=2 -> kept untested).
        TrainRow("t0", ["X"], ["Y"], task="tiny"),  # t0 at 90: X, Y
        TrainRow("t1", ["Y"], [], task="tiny"),  # t1 at 100: Y, X
    ]


def test_hand_checked_toy_filter_and_mining() -> None:
    rows = toy_rows()
    ranking = teacher_pass(rows, angle_teacher, depth=8, batch_size=3, show_progress=False)
    toy = ranking.tasks["toy"]
    assert toy.corpus == ["A", "C", "D", "F", "B", "E"]
    assert toy.depth == 6  # min(depth, corpus size)
    assert toy.positive_rank.tolist() == [0, 3, 2, 1, 0]
    assert [toy.corpus[j] for j in toy.top_indices[toy.query_of_row[2]]] == ["C", "D", "B", "E", "A", "F"]

    kept, report = apply_filter(rows, ranking, top_k=2, negatives=3, window=(1, 4), seed=0)
    assert [r.query for r in kept] == ["q0", "q2", "q3", "E", "t0", "t1"]  # q1 dropped
    negs = {r.query: r.neg for r in kept}
    # q0: existing C kept; window ranks 1..3 = B, C, D minus C (existing) -> exactly B, D (rank order).
    assert negs["q0"] == ["C", "B", "D"]
    # q2: window ranks 1..3 = D, B, E minus positive B -> D, E; one random pad from {A, C, F}.
    assert negs["q2"][:2] == ["D", "E"] and negs["q2"][2] in {"A", "C", "F"}
    # q3: window = E, D, C minus positive E -> D, C; pad from corpus minus {A, E, D, C} = {B, F}.
    assert negs["q3"][:2] == ["D", "C"] and negs["q3"][2] in {"B", "F"}
    # query "E": window = E, C, B minus the query text E -> C, B; pad from {A, F}.
    assert negs["E"][:2] == ["C", "B"] and negs["E"][2] in {"A", "F"}
    # tiny: t0 keeps existing Y, window rank 1 is Y again, no other corpus item -> 2 missing.
    assert negs["t0"] == ["Y"] and negs["t1"] == ["X"]

    assert report["rows_before"] == 7 and report["rows_after"] == 6
    assert report["dropped"] == {"positive_below_top_k": 1}
    assert report["tasks"]["tiny"]["kept_unfiltered"]["corpus_not_larger_than_top_k"] == 2
    assert report["tasks"]["toy"]["negatives"] == {
        "existing": 1, "mined": 8, "padding": 3, "missing": 0, "existing_discarded": 0}
    assert report["tasks"]["tiny"]["negatives"] == {
        "existing": 1, "mined": 1, "padding": 0, "missing": 4, "existing_discarded": 0}

    # top_k=0: a row survives only if its positive is the teacher's first hit. toy: q0, E.
    # tiny is now tested (corpus 2 > 0): t0 -> X and t1 -> Y are both rank 0.
    kept0, report0 = apply_filter(rows, ranking, top_k=0, negatives=0, window=(1, 4))
    assert [r.query for r in kept0] == ["q0", "E", "t0", "t1"]
    assert report0["dropped"] == {"positive_below_top_k": 3}  # q1, q2, q3
    assert all(r.neg == [] for r in kept0)


def test_top_k_none_keeps_everything_and_same_negatives_under_every_threshold() -> None:
    rows = toy_rows()
    ranking = teacher_pass(rows, angle_teacher, depth=8, show_progress=False)
    kept_all, report = apply_filter(rows, ranking, top_k=None, negatives=3, window=(1, 4), seed=0)
    assert [r.query for r in kept_all] == [r.query for r in rows]
    assert report["kept_unfiltered"]["filter_off"] == len(rows)
    by_query = {r.query: r.neg for r in kept_all}
    # q1 (kept now): existing F, window ranks 1..3 = B, C, D minus positive D -> B, C.
    assert by_query["q1"] == ["F", "B", "C"]
    kept2, _ = apply_filter(rows, ranking, top_k=2, negatives=3, window=(1, 4), seed=0)
    for row in kept2:  # the window draw happens before the cut
        assert row.neg == by_query[row.query]
    with pytest.raises(HarnessError, match="deeper"):
        apply_filter(rows, teacher_pass(rows, angle_teacher, depth=3, show_progress=False), top_k=3,
                     negatives=0, window=(0, 3))


def test_candidate_pool_and_window_beyond_a_small_corpus() -> None:
    rows = toy_rows()
    # A pool replaces toy's corpus; positives are added (after the pool) so each has a score.
    ranking = teacher_pass(rows, angle_teacher, depth=8, show_progress=False,
                           candidate_pools={"toy": ["B", "C", "E", "F"]})
    assert ranking.tasks["toy"].corpus == ["B", "C", "E", "F", "A", "D"]
    assert ranking.tasks["tiny"].corpus == ["X", "Y"]
    assert ranking.key != teacher_pass(rows, angle_teacher, depth=8, show_progress=False).key
    # KaLM's window (50, 100) lies past a 6-item corpus: every new negative is random padding.
    kept, report = apply_filter(rows, ranking, top_k=None, negatives=2, window=(50, 100), seed=1)
    assert report["negatives"]["mined"] == 0 and report["negatives"]["padding"] > 0
    for row in kept:
        assert not set(row.neg) & {*row.pos, row.query}


# --------------------------------------------------------------------------- a larger synthetic task


def _unit(seed_text: str, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(int(hashlib.sha256(seed_text.encode()).hexdigest()[:12], 16))
    v = rng.normal(size=dim)
    return v / np.linalg.norm(v)


def noisy_teacher(texts: list[str], side: str) -> np.ndarray:
    """doc-i is a random unit vector; query-i is doc-i plus noise growing with i, so late rows fail."""
    out = []
    for t in texts:
        if t.startswith("query-"):
            i = int(t.split("-")[1])
            v = _unit(f"doc-{i}") + (i / 40.0) * _unit(t)
        else:
            v = _unit(t)
        out.append(v / np.linalg.norm(v))
    return np.asarray(out, dtype=np.float32)


def synthetic_rows(n: int = 120) -> list[TrainRow]:
    rows = []
    for i in range(n):
        neg = [f"doc-{(i * 7 + 3) % n}-neg", f"doc-{i}"] if i % 5 == 0 else [f"doc-{(i * 7 + 3) % n}-neg"]
        rows.append(TrainRow(f"query-{i}", [f"doc-{i}"], neg, task="synth" if i % 3 else "other"))
    # A symmetric row whose query text is also a corpus text.
    rows.append(TrainRow("doc-5", ["doc-6"], [], task="synth"))
    return rows


class CountingTeacher:
    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()
        self.calls = 0
        self.largest_call = 0

    def __call__(self, texts: list[str], side: str) -> np.ndarray:
        self.calls += 1
        self.largest_call = max(self.largest_call, len(texts))
        self.seen.update((side, t) for t in texts)
        return noisy_teacher(texts, side)


def test_negatives_exclude_positives_and_query_and_counts_add_up() -> None:
    rows = synthetic_rows()
    ranking = teacher_pass(rows, noisy_teacher, depth=64, show_progress=False)
    for top_k in (None, 5, 20):
        kept, report = apply_filter(rows, ranking, top_k=top_k, negatives=7, window=(10, 40), seed=3)
        assert report["rows_before"] == len(rows)
        assert report["rows_after"] == len(kept) == report["rows_before"] - sum(report["dropped"].values())
        negs = report["negatives"]
        assert negs["existing"] + negs["mined"] + negs["padding"] + negs["missing"] == 7 * len(kept)
        # Rows query-i with i % 5 == 0 list their own positive as a negative: discarded, counted.
        assert negs["existing_discarded"] == sum(r.query.startswith("query-") and int(r.query[6:]) % 5 == 0
                                                 for r in kept)
        for task, part in report["tasks"].items():
            assert part["rows_after"] == part["rows_before"] - part["dropped"]["positive_below_top_k"]
        for row in kept:
            assert not set(row.neg) & set(row.pos)
            assert row.query not in row.neg
            assert len(row.neg) == len(set(row.neg)) == 7
    # Deterministic by seed; another seed changes some window draws.
    again, _ = apply_filter(rows, ranking, top_k=20, negatives=7, window=(10, 40), seed=3)
    other, _ = apply_filter(rows, ranking, top_k=20, negatives=7, window=(10, 40), seed=4)
    first, _ = apply_filter(rows, ranking, top_k=20, negatives=7, window=(10, 40), seed=3)
    assert [r.neg for r in again] == [r.neg for r in first]
    assert [r.neg for r in other] != [r.neg for r in first]
    # Stricter thresholds keep a subset.
    sizes = [len(apply_filter(rows, ranking, top_k=k, negatives=0)[0]) for k in (0, 2, 10, 50)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] < len(rows)
    with pytest.raises(HarnessError, match="other rows"):
        apply_filter(rows[:-1], ranking, top_k=5, negatives=0)


MINING_SWEEP = [
    MiningRule("window", window=(10, 40)),
    MiningRule("window", window=(10, 40), sampling="hardest"),
    MiningRule("perc_pos", percent=0.95),
    MiningRule("perc_pos", percent=0.9, sampling="random"),
    MiningRule("margin_pos", margin=0.05),
    MiningRule("margin_pos", margin=0.1),
    MiningRule("top_k_abs", max_score=0.5),
]


def test_teacher_encodes_once_for_a_threshold_and_mining_ablation(tmp_path: Path) -> None:
    """Every filtering threshold x every mining method and parameter value: one teacher pass."""
    rows = synthetic_rows()
    teacher = CountingTeacher()
    cards = {}
    mined = {}
    for top_k in (None, 10, 20, 50):
        for rule in MINING_SWEEP:
            ranking = cached_teacher_pass(rows, teacher, "noisy-v1", tmp_path, depth=64, batch_size=32,
                                          show_progress=False)
            assert ranking.stats["cache"] == ("miss" if top_k is None and rule == MINING_SWEEP[0] else "hit")
            kept, card = apply_filter(rows, ranking, top_k=top_k, negatives=7, rule=rule)
            if rule == MINING_SWEEP[0]:
                cards[top_k] = card
            mined[top_k, rule] = [r.neg for r in kept]
            assert card["negatives_rule"]["method"] == rule.method
    expected = {("query", r.query) for r in rows} | {("passage", t) for r in rows for t in (*r.pos, *r.neg)}
    assert set(teacher.seen) == expected
    # every text once per task it appears in (texts are deduplicated per task), across all 4 x 7 arms
    in_task = {(r.task, side, text) for r in rows
               for side, text in [("query", r.query), *(("passage", t) for t in (*r.pos, *r.neg))]}
    per_task = Counter((side, text) for _, side, text in in_task)
    assert teacher.seen == per_task and per_task[("passage", "doc-6")] == 2  # doc-6 is in both tasks
    assert len({tuple(map(tuple, mined[None, rule])) for rule in MINING_SWEEP}) == len(MINING_SWEEP)  # all differ
    assert teacher.calls >= -(-len(expected) // 32) and teacher.largest_call <= 32  # chunked by batch_size
    kept = [cards[k]["rows_after"] for k in (None, 10, 20, 50)]
    assert kept[0] == len(rows) and kept[1] <= kept[2] <= kept[3] < kept[0]
    assert len(list((tmp_path / "rankings").iterdir())) == 1
    # Another teacher or depth is another key.
    assert ranking_key("noisy-v2", rows, 64) != ranking_key("noisy-v1", rows, 64) != ranking_key("noisy-v1", rows, 65)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    rows = synthetic_rows(40)
    ranking = teacher_pass(rows, noisy_teacher, depth=16, show_progress=False, teacher_id="t")
    loaded = load_ranking(save_ranking(ranking, tmp_path / "r"))
    assert loaded.key == ranking.key and loaded.tasks.keys() == ranking.tasks.keys()
    for name, task in ranking.tasks.items():
        other = loaded.tasks[name]
        assert other.corpus == task.corpus
        for field in ("row_indices", "query_of_row", "top_indices", "top_scores", "positive_score", "positive_rank"):
            np.testing.assert_array_equal(getattr(other, field), getattr(task, field))
            assert getattr(other, field).dtype == getattr(task, field).dtype
    assert apply_filter(rows, loaded, top_k=3, negatives=4, window=(2, 10))[0] == \
        apply_filter(rows, ranking, top_k=3, negatives=4, window=(2, 10))[0]
    with pytest.raises(HarnessError, match="L2-normalised"):
        teacher_pass(rows, lambda t, s: 2 * noisy_teacher(t, s), show_progress=False)


# --------------------------------------------------------------------------- a real teacher

def stdlib_docstring_rows(limit: int) -> list[TrainRow]:
    """Real retrieval rows from the offline suite: docstring -> function body (one task)."""
    from harness.data.offline.stdlib_code import stdlib_code_pairs

    return [TrainRow(p.query, [p.code], [], task="stdlib-code", source="stdlib")
            for p in stdlib_code_pairs("train")[:limit]]


@pytest.fixture(scope="module")
def minilm_embed():
    from harness.config import ModelConfig
    from harness.model import Embedder

    embedder = Embedder.from_config(ModelConfig())

    def embed(texts: list[str], side: str) -> np.ndarray:
        return embedder.encode(texts, max_length=48 if side == "query" else 96, batch_size=64)

    return embed


@pytest.mark.slow
def test_real_teacher_minilm_on_stdlib_rows(minilm_embed, tmp_path: Path) -> None:
    rows = stdlib_docstring_rows(250)
    assert len(rows) == 250
    ranking = cached_teacher_pass(rows, minilm_embed, "minilm", tmp_path, depth=128, show_progress=False)
    after = {k: apply_filter(rows, ranking, top_k=k, negatives=7, window=(50, 100), seed=0)
             for k in (1, 5, 10, 50)}
    sizes = [len(after[k][0]) for k in (1, 5, 10, 50)]
    assert sizes == sorted(sizes), sizes  # monotone in top_k
    assert sizes[-1] >= 0.9 * len(rows), sizes  # few dropped at KaLM's 50
    assert sizes[0] < sizes[-1] - 10, sizes  # many more at top_k=1
    kept, report = after[50]
    assert report["negatives"]["mined"] == 7 * len(kept)  # 250-item corpus: the window always suffices
    bodies = {r.pos[0] for r in rows}
    for row in kept:
        assert len(row.neg) == 7 and not set(row.neg) & set(row.pos) and row.query not in row.neg
        assert set(row.neg) <= bodies  # mined from the corpus: other functions' bodies
    # Plausible: the mined negatives (ranks 50-100) score below the positive for most rows.
    task = ranking.tasks["stdlib-code"]
    window_scores = task.top_scores[task.query_of_row][:, 50:100]
    assert np.mean(task.positive_score > window_scores.mean(1)) > 0.9
