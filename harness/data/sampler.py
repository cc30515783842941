"""KaLM's semi-homogeneous task batch sampler.

Contrastive training with in-batch negatives learns more from a batch whose items all come from
one task (the negatives are harder), but a batch of one task only also teaches shortcuts. KaLM
mixes the two: each *global* batch (per-device size x world size, because negatives are gathered
across devices) is about ``ratio`` one task and the rest random rows from all tasks.

Construction, per epoch, from ``(seed, epoch)`` only, so every rank builds the same batches:

1. shuffle the row indices of every task;
2. cut each task into full global batches; each task's leftover (< one batch) is concatenated,
   in a random task order, and cut into *mixed* batches;
3. shuffle the order of the full batches (an incomplete mixed batch, kept only without
   drop-last, stays at the end);
4. take the last ``m = floor(global_batch_size * (1 - ratio))`` items of every batch, pool them
   across batches, permute the pool and put it back;
5. permute the positions inside every batch (see deviations).

ratio = 1 gives fully homogeneous batches (bar the mixed leftovers); ratio = 0 pools every item,
i.e. plain random batches. Each rank then takes a contiguous slice of every global batch.

Follows ``DistributedInTaskSampler`` in HITsz-TMG/KaLM-Embedding ``train/data.py`` (itself from
GritLM). Deviations, on purpose:

- The pool permutation is seeded from ``(seed, epoch)``. The original calls ``torch.randperm``
  without its generator, so ranks could disagree about the batches unless the global torch seed
  happened to match; here the whole epoch is a pure function of ``(seed, epoch)``.
- The random stream is seeded with the pair ``[seed, epoch]`` (numpy ``SeedSequence``), not
  ``seed + epoch``, so (seed 1, epoch 0) and (seed 0, epoch 1) differ.
- ``m`` is computed as ``floor(G * (1 - ratio) + 1e-9)``: plain ``int()`` turns e.g.
  ``10 * (1 - 0.9) = 0.999...`` into 0.
- Ranks get a contiguous slice (the original strides ``rank::world_size`` over the flattened
  order). Because step 4 puts the random part at the *end* of each batch, a contiguous slice
  alone would give rank 0 the homogeneous head and the last rank the random tail; step 5
  (within-batch permutation, not in the original) spreads both parts over all ranks, as the
  stride did. It changes no batch's set of rows.
- Drop-last drops the incomplete mixed batch before the pool step, so exactly the leftover
  rows (< one global batch) go unused. The original lets them join the pool, then drops an
  equally sized random set.
- Without drop-last the short final batch is returned as is; the torch sampler pads it to a
  multiple of ``world_size`` with rows from the start of the epoch (as torch's
  ``DistributedSampler`` and the original do), because gathering across ranks needs equal sizes.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
import torch

from harness.errors import HarnessError


class InvalidSamplerSetting(HarnessError, ValueError):
    """A sampler argument out of range: a ValueError, and printed cleanly by the CLI."""


def _check_ratio(ratio: float) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= float(ratio) <= 1.0:
        raise InvalidSamplerSetting(
            f"homogeneity ratio must be a number in [0, 1] (0 = random batches, "
            f"1 = one task per batch); got {ratio!r}"
        )


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InvalidSamplerSetting(f"{name} must be an integer >= 1; got {value!r}")


def _check_rank(rank: int, world_size: int) -> None:
    if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool) or not 0 <= rank < world_size:
        raise InvalidSamplerSetting(f"rank must be in [0, {world_size - 1}] for world_size {world_size}; got {rank!r}")


def _rows_by_task(task_of_row: Sequence[Hashable]) -> list[np.ndarray]:
    """Row indices of each task, tasks in order of first appearance (stable across runs).

    A dict gives first-appearance codes for any hashable label (mixed types cannot be sorted,
    so np.unique is out); numpy does the grouping. An integer array (a table's task codes) takes a
    vectorised path to the same groups: a million rows cost milliseconds, not a Python loop.
    """
    if isinstance(task_of_row, np.ndarray) and np.issubdtype(task_of_row.dtype, np.integer):
        labels, first, inverse = np.unique(task_of_row, return_index=True, return_inverse=True)
        rank = np.empty(len(labels), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(labels))  # first-appearance order
        codes = rank[inverse.ravel()]
        order = np.argsort(codes, kind="stable")
        return np.split(order, np.cumsum(np.bincount(codes, minlength=len(labels)))[:-1]) if len(labels) else []
    code_of_task: dict[Hashable, int] = {}
    codes = np.fromiter(
        (code_of_task.setdefault(task, len(code_of_task)) for task in task_of_row),
        dtype=np.int64,
        count=len(task_of_row),
    )
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=len(code_of_task))
    return np.split(order, np.cumsum(sizes)[:-1]) if len(code_of_task) else []


def tail_size(global_batch_size: int, ratio: float) -> int:
    """How many items of each global batch go to the shared random pool."""
    return math.floor(global_batch_size * (1.0 - ratio) + 1e-9)


def semi_homogeneous_batches(
    task_of_row: Sequence[Hashable],
    *,
    global_batch_size: int,
    ratio: float,
    seed: int,
    epoch: int = 0,
    drop_last: bool = True,
) -> list[list[int]]:
    """Global batches of row indices, each about ``ratio`` one task; a pure function of its inputs.

    Every row appears exactly once, except that with ``drop_last`` the final incomplete batch
    (fewer than ``global_batch_size`` rows) is dropped.
    """
    _check_ratio(ratio)
    _check_positive("global_batch_size", global_batch_size)
    rng = np.random.default_rng([int(seed), int(epoch)])
    size = int(global_batch_size)

    full_batches: list[np.ndarray] = []
    leftovers: list[np.ndarray] = []
    for rows in _rows_by_task(task_of_row):
        rows = rng.permutation(rows)
        n_full = len(rows) // size
        full_batches.extend(np.split(rows[: n_full * size], n_full) if n_full else [])
        if len(rows) % size:
            leftovers.append(rows[n_full * size :])

    short_batch: np.ndarray | None = None
    if leftovers:
        mixed = np.concatenate([leftovers[i] for i in rng.permutation(len(leftovers))])
        n_full = len(mixed) // size
        full_batches.extend(np.split(mixed[: n_full * size], n_full) if n_full else [])
        if len(mixed) % size and not drop_last:
            short_batch = mixed[n_full * size :]

    batches = [full_batches[i] for i in rng.permutation(len(full_batches))]
    if short_batch is not None:
        batches.append(short_batch)
    if not batches:
        return []

    m = tail_size(size, ratio)
    if m > 0:
        # Tail of each batch (a short batch may give fewer than m) -> one pool -> permute -> back.
        tails = [batch[-m:] for batch in batches]
        pool = rng.permutation(np.concatenate(tails))
        start = 0
        for batch, tail in zip(batches, tails):
            batch[len(batch) - len(tail) :] = pool[start : start + len(tail)]
            start += len(tail)

    return [rng.permutation(batch).tolist() for batch in batches]


def rank_slice(global_batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This rank's contiguous share of one global batch (the global batch must split evenly)."""
    _check_positive("world_size", world_size)
    _check_rank(rank, world_size)
    if len(global_batch) % world_size:
        raise InvalidSamplerSetting(
            f"global batch of {len(global_batch)} rows cannot be split evenly over world_size {world_size}; "
            f"the global batch size must be a multiple of the world size"
        )
    per_rank = len(global_batch) // world_size
    return list(global_batch[rank * per_rank : (rank + 1) * per_rank])


class SemiHomogeneousBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields this rank's per-device index lists; use as ``DataLoader(batch_sampler=...)``.

    Every rank builds the same global batches from ``(seed, epoch)`` and keeps its slice, so no
    communication is needed. Call ``set_epoch`` before each epoch, as with ``DistributedSampler``.
    """

    def __init__(
        self,
        task_of_row: Sequence[Hashable],
        *,
        per_device_batch_size: int,
        ratio: float,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        _check_ratio(ratio)
        _check_positive("per_device_batch_size", per_device_batch_size)
        _check_positive("world_size", world_size)
        _check_rank(rank, world_size)
        self.task_of_row = task_of_row
        self.per_device_batch_size = int(per_device_batch_size)
        self.world_size = int(world_size)
        self.global_batch_size = self.per_device_batch_size * self.world_size
        self.ratio = float(ratio)
        self.seed = int(seed)
        self.rank = int(rank)
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches, identical on every rank (short last batch padded)."""
        batches = semi_homogeneous_batches(
            self.task_of_row,
            global_batch_size=self.global_batch_size,
            ratio=self.ratio,
            seed=self.seed,
            epoch=self.epoch,
            drop_last=self.drop_last,
        )
        if batches and len(batches[-1]) % self.world_size:
            missing = self.world_size - len(batches[-1]) % self.world_size
            recycled = [row for batch in batches for row in batch][:missing]
            # A dataset smaller than world_size: repeat what there is.
            recycled = (recycled * math.ceil(missing / len(recycled)))[:missing]
            batches[-1] = batches[-1] + recycled
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield rank_slice(batch, self.rank, self.world_size)

    def __len__(self) -> int:
        # Every full global batch survives (homogeneous + mixed), so the count is N // G.
        n_rows = len(self.task_of_row)
        if self.drop_last:
            return n_rows // self.global_batch_size
        return math.ceil(n_rows / self.global_batch_size)


def majority_share(batches: list[list[int]], task_of_row: Sequence[Hashable]) -> float:
    """Mean over batches of (rows of the most common task) / (batch size): 1.0 = all homogeneous."""
    if not batches or any(len(batch) == 0 for batch in batches):
        raise ValueError("majority_share needs at least one batch and no empty batches")
    shares = [Counter(task_of_row[i] for i in batch).most_common(1)[0][1] / len(batch) for batch in batches]
    return float(np.mean(shares))
