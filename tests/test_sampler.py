"""The semi-homogeneous sampler: batch composition matches the ratio, coverage, determinism, ranks."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from harness.data.sampler import (
    SemiHomogeneousBatchSampler,
    majority_share,
    rank_slice,
    semi_homogeneous_batches,
    tail_size,
)

TASK_SIZES = {"nli": 600, "msmarco": 400, "banking77": 300, "fiqa": 200}
N_ROWS = sum(TASK_SIZES.values())
GLOBAL = 32
RATIOS = [0.0, 0.25, 0.5, 0.75, 1.0]
SEEDS = range(4)


@pytest.fixture(scope="module")
def task_of_row() -> list[str]:
    """Task labels interleaved in row order, as after concatenating and shuffling sources."""
    labels = [task for task, n in TASK_SIZES.items() for _ in range(n)]
    return [labels[i] for i in np.random.default_rng(123).permutation(len(labels))]


def per_batch_shares(batches: list[list[int]], task_of_row: list[str]) -> list[float]:
    return [majority_share([batch], task_of_row) for batch in batches]


def mean_share(task_of_row: list[str], ratio: float) -> float:
    """Majority share averaged over a few seeds (184 batches) so sampling noise is ~0.005."""
    epochs = [semi_homogeneous_batches(task_of_row, global_batch_size=GLOBAL, ratio=ratio, seed=s) for s in SEEDS]
    shares = [majority_share(batches, task_of_row) for batches in epochs]
    return float(np.mean(shares))


def simulated_expected_share(ratio: float, draws: int = 20_000) -> float:
    """Expected majority share under the recipe's model, computed independently of the sampler.

    A batch is headed by task t with probability b_t / B (b_t = full batches of t). Its head has
    G - m rows of t; its m tail rows are drawn from the pool, whose task shares q_t ~= b_t / B
    (each batch gives m rows to the pool). Majority = largest task count in the batch.
    """
    rng = np.random.default_rng(7)
    batches_per_task = np.array([n // GLOBAL for n in TASK_SIZES.values()], dtype=float)
    q = batches_per_task / batches_per_task.sum()
    m = tail_size(GLOBAL, ratio)
    heads = rng.choice(len(q), size=draws, p=q)
    counts = rng.multinomial(m, q, size=draws)
    counts[np.arange(draws), heads] += GLOBAL - m
    return float((counts.max(axis=1) / GLOBAL).mean())


def test_ratio_one_gives_homogeneous_batches_except_the_mixed_leftovers(task_of_row):
    batches = semi_homogeneous_batches(task_of_row, global_batch_size=GLOBAL, ratio=1.0, seed=0)
    shares = per_batch_shares(batches, task_of_row)
    homogeneous = sum(n // GLOBAL for n in TASK_SIZES.values())  # 18 + 12 + 9 + 6 = 45
    mixed_full = sum(n % GLOBAL for n in TASK_SIZES.values()) // GLOBAL  # leftovers 60 rows -> 1 batch
    assert len(batches) == homogeneous + mixed_full == N_ROWS // GLOBAL
    assert sum(share == 1.0 for share in shares) == homogeneous
    assert sum(share < 1.0 for share in shares) == mixed_full == 1


def test_share_rises_with_ratio_and_matches_the_expected_value(task_of_row):
    measured = {ratio: mean_share(task_of_row, ratio) for ratio in RATIOS}
    assert all(a < b for a, b in zip(measured.values(), list(measured.values())[1:])), measured
    for ratio in RATIOS[:-1]:  # ratio 1 is checked exactly above (the mixed batch lowers the mean)
        assert measured[ratio] == pytest.approx(simulated_expected_share(ratio), abs=0.03), (ratio, measured)
    # ratio 0 is plain random batches: the expected max count of a multinomial(32, n_t / N).
    rng = np.random.default_rng(11)
    p = np.array(list(TASK_SIZES.values())) / N_ROWS
    random_batches = rng.multinomial(GLOBAL, p, size=20_000).max(axis=1).mean() / GLOBAL
    assert measured[0.0] == pytest.approx(random_batches, abs=0.03)


def test_half_ratio_matches_the_analytic_expectation(task_of_row):
    # Half of each batch (16 rows) is its own task t; the other 16 are random pool rows, a share
    # q_t of which is again task t. So E[share] ~= 0.5 + 0.5 * sum_t (b_t / B) * q_t, q_t = b_t / B.
    batches_per_task = np.array([n // GLOBAL for n in TASK_SIZES.values()], dtype=float)
    q = batches_per_task / batches_per_task.sum()
    analytic = 0.5 + 0.5 * float((q * q).sum())  # = 0.5 + 0.5 * 0.2889 = 0.644
    assert analytic == pytest.approx(0.644, abs=0.001)
    assert mean_share(task_of_row, 0.5) == pytest.approx(analytic, abs=0.03)


@pytest.mark.parametrize("ratio", RATIOS)
def test_each_epoch_uses_every_row_once_apart_from_the_dropped_tail(task_of_row, ratio):
    for epoch in (0, 1):
        batches = semi_homogeneous_batches(task_of_row, global_batch_size=GLOBAL, ratio=ratio, seed=3, epoch=epoch)
        used = [row for batch in batches for row in batch]
        assert all(len(batch) == GLOBAL for batch in batches)
        assert len(used) == len(set(used))
        assert set(used) <= set(range(N_ROWS))
        assert N_ROWS - len(used) == N_ROWS % GLOBAL == 28  # fewer than one global batch

    kept = semi_homogeneous_batches(task_of_row, global_batch_size=GLOBAL, ratio=ratio, seed=3, drop_last=False)
    assert sorted(row for batch in kept for row in batch) == list(range(N_ROWS))
    assert len(kept[-1]) == 28


def test_order_is_a_function_of_seed_and_epoch(task_of_row):
    def build(seed: int, epoch: int) -> list[list[int]]:
        return semi_homogeneous_batches(task_of_row, global_batch_size=GLOBAL, ratio=0.5, seed=seed, epoch=epoch)

    assert build(5, 2) != build(6, 2)
    assert build(5, 2) != build(5, 3)
    assert build(1, 0) != build(0, 1)  # not seeded with seed + epoch

    sampler = SemiHomogeneousBatchSampler(task_of_row, per_device_batch_size=GLOBAL, ratio=0.5, seed=5)
    sampler.set_epoch(2)
    assert list(sampler) == build(5, 2)
    sampler.set_epoch(3)
    assert list(sampler) == build(5, 3)


_BUILD_IN_A_CHILD = """
import json, sys
from harness.data.sampler import semi_homogeneous_batches
labels = json.loads(sys.stdin.read())
print(json.dumps(semi_homogeneous_batches(labels, global_batch_size=32, ratio=0.5, seed=5, epoch=2)))
"""


def test_order_is_the_same_in_processes_with_other_hash_seeds(task_of_row):
    """Every rank builds the batches itself: two processes (other PYTHONHASHSEED, as two ranks or a
    resumed run may have) must get exactly this process's order."""
    import json
    import os
    import subprocess
    import sys

    here = semi_homogeneous_batches(task_of_row, global_batch_size=GLOBAL, ratio=0.5, seed=5, epoch=2)
    for hash_seed in ("1", "2"):
        child = subprocess.run([sys.executable, "-c", _BUILD_IN_A_CHILD], input=json.dumps(task_of_row),
                               env={**os.environ, "PYTHONHASHSEED": hash_seed}, capture_output=True, text=True,
                               check=True)
        assert json.loads(child.stdout) == here, f"PYTHONHASHSEED={hash_seed}"


def test_ranks_get_disjoint_slices_of_the_same_global_batches(task_of_row):
    global_batches = semi_homogeneous_batches(task_of_row, global_batch_size=GLOBAL, ratio=0.5, seed=9, epoch=1)
    world_one = SemiHomogeneousBatchSampler(task_of_row, per_device_batch_size=GLOBAL, ratio=0.5, seed=9)
    world_one.set_epoch(1)
    assert list(world_one) == global_batches

    per_rank = []
    for rank in range(2):
        sampler = SemiHomogeneousBatchSampler(
            task_of_row, per_device_batch_size=GLOBAL // 2, ratio=0.5, seed=9, rank=rank, world_size=2
        )
        sampler.set_epoch(1)
        yielded = list(sampler)
        assert yielded == [rank_slice(batch, rank, 2) for batch in global_batches]
        assert len(sampler) == len(yielded) == len(global_batches)
        per_rank.append(yielded)
    for step, batch in enumerate(global_batches):
        first, second = per_rank[0][step], per_rank[1][step]
        assert len(first) == len(second) == GLOBAL // 2
        assert not set(first) & set(second)
        assert first + second == batch


def test_each_rank_gets_both_homogeneous_and_random_rows(task_of_row):
    # The random pool part must not all land on the last rank (contiguous slices + tail pooling).
    shares = []
    for rank in range(2):
        sampler = SemiHomogeneousBatchSampler(
            task_of_row, per_device_batch_size=GLOBAL // 2, ratio=0.5, seed=0, rank=rank, world_size=2
        )
        shares.append(majority_share(list(sampler), task_of_row))
    assert abs(shares[0] - shares[1]) < 0.1, shares
    assert all(0.55 < share < 0.9 for share in shares), shares


def test_sampler_drives_a_dataloader(task_of_row):
    dataset = torch.utils.data.TensorDataset(torch.arange(N_ROWS))
    sampler = SemiHomogeneousBatchSampler(
        task_of_row, per_device_batch_size=8, ratio=0.25, seed=1, rank=1, world_size=4
    )
    loaded = [batch[0].tolist() for batch in torch.utils.data.DataLoader(dataset, batch_sampler=sampler)]
    assert loaded == list(sampler)
    assert len(loaded) == len(sampler) == N_ROWS // GLOBAL


def test_short_last_batch_is_padded_to_split_over_ranks_without_drop_last():
    tasks = ["a", "a", "a", "b", "b", "b", "b"]  # 7 rows, global batch 4 -> batches of 4 and 3
    slices = []
    for rank in range(2):
        sampler = SemiHomogeneousBatchSampler(
            tasks, per_device_batch_size=2, ratio=0.5, seed=0, rank=rank, world_size=2, drop_last=False
        )
        slices.append(list(sampler))
        assert len(sampler) == 2 == len(slices[-1])
        assert all(len(batch) == 2 for batch in slices[-1])
    rows = Counter(row for batches in slices for batch in batches for row in batch)
    assert set(rows) == set(range(7)) and sum(rows.values()) == 8  # one row recycled


@pytest.mark.parametrize("ratio", [-0.1, 1.5, math.nan, "0.5", True])
def test_invalid_ratio_names_the_allowed_range(task_of_row, ratio):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        semi_homogeneous_batches(task_of_row, global_batch_size=GLOBAL, ratio=ratio, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SemiHomogeneousBatchSampler(task_of_row, per_device_batch_size=8, ratio=ratio, seed=0)


def test_invalid_slicing_is_rejected():
    with pytest.raises(ValueError, match="multiple of the world size"):
        rank_slice(list(range(10)), 0, 3)
    with pytest.raises(ValueError, match="rank must be in"):
        rank_slice(list(range(10)), 2, 2)
    with pytest.raises(ValueError, match="per_device_batch_size"):
        SemiHomogeneousBatchSampler(["a"], per_device_batch_size=0, ratio=0.5, seed=0)


def test_tail_size_survives_float_rounding():
    assert tail_size(10, 0.9) == 1  # int(10 * (1 - 0.9)) would be 0
    assert [tail_size(GLOBAL, r) for r in RATIOS] == [32, 24, 16, 8, 0]
