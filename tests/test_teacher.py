"""The sharded teacher pass: shards on disk give exactly the single-process rankings and negatives;
ties go to the smaller corpus index at every depth and block size; float16 stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.data import teacher
from harness.data.filtering import (
    apply_filter,
    cached_teacher_pass,
    encode_teacher_shard,
    teacher_pass,
)
from harness.data.rows import TrainRow
from harness.data.table import RowTable, write_table

from .test_filtering import CountingTeacher, noisy_teacher, synthetic_rows


def _same_ranking(a, b) -> None:
    assert a.tasks.keys() == b.tasks.keys() and a.rows_fingerprint == b.rows_fingerprint
    for name, task in a.tasks.items():
        other = b.tasks[name]
        assert other.corpus == task.corpus, name
        for field in ("row_indices", "query_of_row", "top_indices", "top_scores", "positive_score", "positive_rank"):
            np.testing.assert_array_equal(getattr(other, field), getattr(task, field), err_msg=f"{name}.{field}")


@pytest.mark.parametrize("n_shards", [2, 3])
def test_shards_give_exactly_the_single_process_rankings_and_negatives(tmp_path: Path, n_shards: int) -> None:
    rows = synthetic_rows(200)
    write_table(tmp_path / "rows.arrow", rows)
    table = RowTable(tmp_path / "rows.arrow")  # shards read the memory-mapped table, as in the data stage
    one = CountingTeacher()
    single = teacher_pass(rows, one, depth=64, batch_size=16, show_progress=False, teacher_id="t")
    counting = CountingTeacher()
    cache = tmp_path / "cache"
    done = [encode_teacher_shard(table, counting, "t", cache, s, n_shards, batch_size=16, show_progress=False)
            for s in range(n_shards)]
    assert [d["complete"] for d in done] == [False] * (n_shards - 1) + [True]
    assert 0 < min(d["texts_encoded"] for d in done) and counting.seen == one.seen  # each text as often, split
    sharded = cached_teacher_pass(table, CountingTeacher(), "t", cache, depth=64, batch_size=16, show_progress=False)
    assert sharded.stats["shards"] == n_shards and sharded.stats["texts_encoded"] == 0  # merged, not re-encoded
    _same_ranking(single, sharded)
    for top_k in (None, 5, 20):
        kept_a, report_a = apply_filter(rows, single, top_k=top_k, negatives=7, window=(10, 40), seed=3)
        kept_b, report_b = apply_filter(table, sharded, top_k=top_k, negatives=7, window=(10, 40), seed=3)
        assert kept_a == kept_b and report_a["negatives"] == report_b["negatives"]


def test_ties_go_to_the_smaller_corpus_index_at_every_depth_and_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(4, 8)).astype(np.float32)
    distinct /= np.linalg.norm(distinct, axis=1, keepdims=True)
    # 40 corpus items, only 4 distinct vectors: every rank is a tie with about ten others.
    which = rng.integers(0, 4, size=40)
    corpus = distinct[which]
    queries = np.concatenate([distinct, rng.normal(size=(3, 8)).astype(np.float32)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries @ corpus.T
    expected = np.lexsort((np.tile(np.arange(40), (len(queries), 1)), -scores), axis=1)  # score desc, index asc
    full_s, full_i = teacher.exact_top_k(queries, corpus, 40)
    np.testing.assert_array_equal(full_i, expected)
    for depth in (1, 3, 11, 25):
        s, i = teacher.exact_top_k(queries, corpus, depth)
        np.testing.assert_array_equal(i, full_i[:, :depth])  # a prefix of the deeper list
        np.testing.assert_array_equal(s, full_s[:, :depth])
    monkeypatch.setattr(teacher, "CORPUS_BLOCK", 7)  # corpus split into blocks, merged
    for depth in (3, 11, 40):
        s, i = teacher.exact_top_k(queries, corpus, depth)
        np.testing.assert_array_equal(i, full_i[:, :depth])


def test_identical_teacher_vectors_give_the_same_negatives_at_two_depths(tmp_path: Path) -> None:
    """A teacher that maps many texts to one vector (as minilm does with unknown scripts)."""
    def flat(texts: list[str], side: str) -> np.ndarray:
        out = np.zeros((len(texts), 4), dtype=np.float32)
        out[:, 0] = 1.0
        for k, text in enumerate(texts):
            if text.endswith("-x"):  # a few distinct vectors among the ties
                out[k] = [0.6, 0.8, 0, 0]
        return out

    rows = [TrainRow(f"q{i}", [f"d{i}" + ("-x" if i % 7 == 0 else "")], task="t") for i in range(60)]
    shallow = teacher_pass(rows, flat, depth=30, show_progress=False)
    deep = teacher_pass(rows, flat, depth=55, show_progress=False)
    np.testing.assert_array_equal(deep.tasks["t"].top_indices[:, :30], shallow.tasks["t"].top_indices)
    a, _ = apply_filter(rows, shallow, top_k=None, negatives=3, window=(5, 25), seed=1)
    b, _ = apply_filter(rows, deep, top_k=None, negatives=3, window=(5, 25), seed=1)
    assert a == b


def test_float16_store_is_memory_mapped_and_close_to_float32(tmp_path: Path) -> None:
    rows = synthetic_rows(80)
    exact = teacher_pass(rows, noisy_teacher, depth=32, show_progress=False, store_dir=tmp_path / "f32")
    half = teacher_pass(rows, noisy_teacher, depth=32, show_progress=False, store_dir=tmp_path / "f16",
                        store_dtype="float16")
    assert exact.stats["store_dtype"] == "float32" and half.stats["store_dtype"] == "float16"
    files = sorted((tmp_path / "f16").rglob("*.npy"))
    assert [f.name for f in files] == ["task-00000.00000-of-00001.npy", "task-00001.00000-of-00001.npy"]  # per task
    assert all(np.load(f, mmap_mode="r").dtype == np.float16 for f in files)
    for name, task in exact.tasks.items():
        np.testing.assert_allclose(half.tasks[name].top_scores, task.top_scores, atol=2e-3)
        assert (half.tasks[name].top_indices[:, :5] == task.top_indices[:, :5]).mean() > 0.95
    again = teacher_pass(rows, CountingTeacher(), depth=32, show_progress=False, store_dir=tmp_path / "f16",
                         store_dtype="float16")
    assert again.stats["texts_encoded"] == 0  # cached by teacher + texts
    _same_ranking(half, again)


def test_faiss_backend_matches_torch_and_keeps_the_tie_and_depth_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """FAISS (the large-corpus backend) on small data. Distinct vectors: torch's rankings. Duplicated
    vectors: FAISS may score two copies a last bit apart depending on where they sit in its kernel's
    blocks, so the check is the rule itself: every depth a prefix of a deeper one, equal scores in
    corpus-index order."""
    faiss = pytest.importorskip("faiss")  # a dev dependency: installed wherever the tests run
    assert faiss.__version__
    rng = np.random.default_rng(3)
    corpus = rng.normal(size=(300, 16)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    monkeypatch.setattr(teacher, "CORPUS_BLOCK", 128)
    for depth in (10, 50):
        torch_s, torch_i = teacher.exact_top_k(queries, corpus, depth, backend="torch")
        faiss_s, faiss_i = teacher.exact_top_k(queries, corpus, depth, backend="faiss")
        np.testing.assert_array_equal(faiss_i, torch_i)
        np.testing.assert_allclose(faiss_s, torch_s, atol=1e-5)

    corpus[100:140] = corpus[5]  # 41 identical vectors: ties across the cut and across blocks
    near = corpus[[5, 5, 7]] + rng.normal(scale=0.01, size=(3, 16)).astype(np.float32)
    queries = np.concatenate([near / np.linalg.norm(near, axis=1, keepdims=True), queries])
    deep_s, deep_i = teacher.exact_top_k(queries, corpus, 60, backend="faiss")
    for depth in (1, 10, 41):
        _, i = teacher.exact_top_k(queries, corpus, depth, backend="faiss")
        np.testing.assert_array_equal(i, deep_i[:, :depth])
    for row_s, row_i in zip(deep_s, deep_i, strict=True):
        assert (np.diff(row_s) <= 0).all()
        same = np.flatnonzero(np.diff(row_s) == 0)
        assert (row_i[same] < row_i[same + 1]).all()
    assert set(deep_i[0, :41].tolist()) == {5, *range(100, 140)}  # the copies, whatever their last bit
    assert teacher.search_backend(10) == "torch" and teacher.search_backend(teacher.FAISS_MIN_CORPUS) == "faiss"
