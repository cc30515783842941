"""The data stage on the offline suite: mixes, data cards, and filtering thresholds sharing one
teacher pass (real minilm teacher, real stdlib and CLDR rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import DataConfig
from harness.data.mix import build_mix
from harness.errors import HarnessError


def _config(**extra: object) -> DataConfig:
    return DataConfig.model_validate({
        "total_rows": 120, "seed": 3,
        "sources": {"stdlib-code": {"weight": 2.0}, "cldr-bitext": {"weight": 1.0, "langs": ["am", "ha"]}},
        **extra})


def test_mix_follows_weights_and_counts_everything() -> None:
    rows, card = build_mix(_config())
    assert card["sources"]["stdlib-code"]["rows_sampled"] == 80
    assert card["sources"]["cldr-bitext"]["rows_sampled"] == 40
    assert card["rows"] == len(rows) == sum(s["rows_kept"] for s in card["sources"].values())
    assert set(card["sources"]["cldr-bitext"]["rows_per_task"]) <= {"cldr-bitext:am", "cldr-bitext:ha"}
    assert all(r.instruction for r in rows if r.task == "stdlib-code")
    assert not any(r.instruction for r in rows if r.task.startswith("cldr"))
    again, card_again = build_mix(_config())
    assert [r.to_json() for r in again] == [r.to_json() for r in rows] and card_again == card
    other, _ = build_mix(_config(seed=4))
    assert [r.query for r in other] != [r.query for r in rows]


def test_one_source_sample_does_not_move_when_another_weight_changes() -> None:
    rows_a, _ = build_mix(DataConfig.model_validate({"sources": {"stdlib-code": {"max_rows": 50}, "cldr-bitext": {"max_rows": 30}}}))
    rows_b, _ = build_mix(DataConfig.model_validate({"sources": {"stdlib-code": {"max_rows": 50}, "cldr-bitext": {"weight": 0}}}))
    assert [r.query for r in rows_a if r.source == "stdlib-code"] == [r.query for r in rows_b]


@pytest.mark.slow
def test_filter_thresholds_share_one_teacher_pass(fresh_cache: Path) -> None:
    base = {"hard_negatives": 2, "filter": {"teacher": "minilm", "window": [3, 20], "depth": 32, "max_length": 64}}
    cards = {}
    kept = {}
    for top_k in (None, 20, 5, 1):
        rows, card = build_mix(_config(**{**base, "filter": {**base["filter"], "top_k": top_k}}))
        cards[top_k], kept[top_k] = card, len(rows)
        assert all(len(r.neg) == 2 for r in rows)
        assert all(n not in r.pos and n != r.query for r in rows for n in r.neg)
    # the mining rules are cuts on the same ranking: no further teacher pass
    for negatives in ({"method": "perc_pos", "percent": 0.95}, {"method": "margin_pos", "margin": 0.05},
                      {"method": "top_k_abs", "max_score": 0.6}, {"method": "window", "sampling": "hardest"}):
        rows, card = build_mix(_config(**{**base, "filter": {**base["filter"], "top_k": 20, "negatives": negatives}}))
        assert card["filter"]["teacher"]["teacher_pass"] == "hit" and len(rows) == kept[20]
        assert card["filter"]["negatives_rule"]["method"] == negatives["method"]
        mining = card["filter"]["mining"]
        assert mining["candidates"] >= mining["removed_as_false_negatives"] > 0
        if negatives["method"] == "perc_pos":
            assert mining["ratio_to_positive"]["p100"] < 0.95
    assert len(list((fresh_cache / "rankings").iterdir())) == 1
    assert [cards[k]["filter"]["teacher"]["teacher_pass"] for k in (None, 20, 5, 1)] == ["miss", "hit", "hit", "hit"]
    assert kept[None] == 120 and kept[None] >= kept[20] >= kept[5] >= kept[1] and kept[1] < 120
    assert cards[1]["filter"]["rows_after"] == kept[1] == cards[1]["rows_after_filter"]


def test_empty_mix_is_a_clear_error() -> None:
    with pytest.raises(HarnessError, match="data.sources is empty"):
        build_mix(DataConfig())


@pytest.mark.slow
def test_table_matching_train_splits_are_sources() -> None:
    rows, card = build_mix(DataConfig.model_validate({"sources": {
        "febrl-tuples": {"max_rows": 50}, "table-columns": {"max_rows": 30}}}))
    tasks = card["sources"]["febrl-tuples"]["rows_per_task"]
    assert sum(tasks.values()) == 50 and card["sources"]["table-columns"]["rows_kept"] == 30
    tuple_rows = [r for r in rows if r.source == "febrl-tuples"]
    assert all("rec-" not in r.query and r.pos for r in tuple_rows) and all(r.instruction for r in rows)
