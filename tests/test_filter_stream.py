"""The filtered table streams (issue 17): kept rows go from the cut to the writer, the table is hashed
once (while the mix is written), and no rows x window draw exists unless the rule samples randomly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import write


def test_random_draws_made_block_by_block_equal_the_whole_array() -> None:
    from harness.data.filtering import _RowDraws

    n_rows, width = 50_000, 17
    whole = np.random.default_rng([3, 99]).random((n_rows, width))
    draws = _RowDraws([3, 99], width)
    draws.BLOCK = 1000  # several blocks per take, and takes that skip whole blocks
    kept = np.flatnonzero(np.random.default_rng(0).random(n_rows) < 0.3)
    for chunk in np.array_split(kept, 7):
        np.testing.assert_array_equal(draws.take(chunk), whole[chunk])


@pytest.mark.slow
def test_a_filtered_stage_hashes_its_rows_once_and_its_cut_equals_the_list_path(
        tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.config import VariantConfig
    from harness.data import teacher
    from harness.data.filtering import apply_filter, load_ranking
    from harness.data.mining import rule_from_config
    from harness.data.table import open_table
    from harness.stages import data_stage
    from harness.train.stage import build_data

    lines = [json.dumps({"query": f"which fruit is number {i}?", "pos": [f"fruit {i}: a {w}"],
                         "neg": [f"vegetable {i}"] if i % 3 == 0 else []})
             for i, w in enumerate(["apple", "pear", "plum", "fig", "kiwi", "lime"] * 6)]
    source = write(tmp_path / "data" / "fruit.jsonl", "\n".join(lines) + "\n")
    config = VariantConfig.model_validate({"data": {
        "hard_negatives": 3, "sources": {"mine": {"kind": "flag-jsonl", "path": str(source)}},
        "filter": {"teacher": "minilm", "top_k": 4, "window": [2, 8], "depth": 12, "max_length": 32, "bf16": False}}})
    hashed: list[int] = []
    real_add = teacher.RowsDigest.add

    def counting_add(self: teacher.RowsDigest, row: object) -> None:
        hashed.append(1)
        real_add(self, row)  # type: ignore[arg-type]

    monkeypatch.setattr(teacher.RowsDigest, "add", counting_add)
    card = build_data(config, show_progress=False)
    assert card["built"] and card["rows"] == 36
    assert len(hashed) == 36  # once, while the mix is written: not again for the ranking key, plan or cut
    assert "rows_fingerprint" not in card  # the mix's own card keeps it; the data card is unchanged

    # the streamed table is what the in-memory path gives for the same ranking
    from harness.data.mix import mix_dir
    from harness.data.table import TABLE_FILE, RowTable

    mixed = RowTable(mix_dir(config.data) / TABLE_FILE)
    ranking = load_ranking(next((fresh_cache / "rankings").iterdir()))
    kept, report = apply_filter(list(mixed), ranking, top_k=4, negatives=3, seed=0,
                                rule=rule_from_config(config.data.filter))
    assert list(open_table(data_stage(config).dir)) == kept
    assert report["rows_after"] == card["rows_after_filter"] and 0 < len(kept) < 36
