"""The data path on disk: streaming readers -> one streaming mix pass -> a memory-mapped Arrow table.

Real data throughout: FlagEmbedding JSON lines, parquet and a saved HF dataset written here, the
offline suite's stdlib/CLDR rows, and the quickstart's committed data card.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.config import DataConfig, VariantConfig
from harness.data.mix import SeenKeys, build_mix, build_table, dedup_key
from harness.data.rows import TrainRow
from harness.data.sampler import semi_homogeneous_batches
from harness.data.table import TABLE_FILE, RowTable, task_labels, write_table
from harness.errors import HarnessError
from harness.hashing import content_hash

from .conftest import REPO, in_another_process, write

ROWS = [
    {"query": "q1", "pos": ["p1"], "neg": ["n1", "n2", "n3"]},
    {"query": "q2", "pos": ["p2", "p2b"], "neg": []},
    {"query": "q1", "pos": ["p1"], "neg": ["other"]},  # duplicate (query, first positive)
    {"query": "q3", "pos": ["p3"], "instruction": "Find it"},
]


def _jsonl(rows: list[object]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _expected(task: str, source: str) -> list[tuple]:
    return [("q1", ["p1"], ["n1", "n2"], task, None, source), ("q2", ["p2", "p2b"], [], task, None, source),
            ("q3", ["p3"], [], task, "Find it", source)]


def _tuples(rows: list[TrainRow]) -> list[tuple]:
    return [(r.query, r.pos, r.neg, r.task, r.instruction, r.source) for r in rows]


def test_every_format_gives_the_same_table(tmp_path: Path) -> None:
    import datasets
    import pandas as pd

    write(tmp_path / "flag" / "fiqa.jsonl", _jsonl(ROWS))
    (tmp_path / "pq").mkdir()
    pd.DataFrame(ROWS).to_parquet(tmp_path / "pq" / "fiqa.parquet")
    datasets.Dataset.from_list([{**r, "neg": r.get("neg", []), "instruction": r.get("instruction")} for r in ROWS]) \
        .save_to_disk(str(tmp_path / "fiqa"))
    for kind, spec in {"flag-jsonl": {"path": str(tmp_path / "flag")}, "parquet": {"path": str(tmp_path / "pq")},
                       "hf-dataset": {"dataset": str(tmp_path / "fiqa")}}.items():
        config = DataConfig.model_validate({"hard_negatives": 2, "sources": {"src": {"kind": kind, **spec}}})
        rows, card = build_mix(config)
        assert _tuples(rows) == _expected("fiqa", "src"), kind
        source = card["sources"]["src"]
        assert (source["rows_available"], source["duplicates_removed"], source["rows_kept"],
                source["hard_negatives_trimmed"]) == (4, 1, 3, 1), kind
        assert card["content_hash"] == content_hash([r.to_json() for r in rows]), kind  # streamed == in-memory hash


def test_malformed_rows_name_file_and_line_or_are_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", _jsonl(ROWS[:2]) + "{broken\n" + _jsonl([{"pos": ["x"]}, ROWS[3]]))
    spec = {"kind": "flag-jsonl", "path": str(path)}
    with pytest.raises(HarnessError, match=f"{path}:3: invalid JSON"):
        build_table(DataConfig.model_validate({"sources": {"s": spec}}), tmp_path / "out", show_progress=False)
    rows, card = build_mix(DataConfig.model_validate({"sources": {"s": {**spec, "on_error": "skip"}}}))
    assert [r.query for r in rows] == ["q1", "q2", "q3"]
    source = card["sources"]["s"]
    assert source["malformed_rows_skipped"] == 2 and source["rows_available"] == 3
    assert f"{path}:3:" in source["malformed_examples"][0] and f"{path}:4:" in source["malformed_examples"][1]


def test_table_reads_like_a_list_and_gives_the_sampler_its_task_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tasks = ["nli", "msmarco", "fiqa", "banking77"]
    rows = [TrainRow(f"q{i}", [f"p{i}"], [f"n{i}"] * (i % 3), task=tasks[int(rng.integers(4))],
                     instruction="Do" if i % 2 else None, source="s") for i in range(10_000)]
    path = tmp_path / TABLE_FILE
    assert write_table(path, rows) == len(rows)
    table = RowTable(path)
    assert len(table) == len(rows) and len(table._batches) > 1  # several record batches
    for i in (0, 1, 4095, 4096, 9999, -1):
        assert table[i] == rows[i]
    assert list(table) == rows and table[10:13] == rows[10:13]
    with pytest.raises(IndexError):
        table[len(rows)]
    codes = table.task_codes()
    assert codes.dtype == np.int32 and [table.task_names()[c] for c in codes] == [r.task for r in rows]
    labels = [r.task for r in rows]
    for ratio in (0.0, 0.5, 1.0):
        kwargs = {"global_batch_size": 32, "ratio": ratio, "seed": 7}
        assert semi_homogeneous_batches(task_labels(table), **kwargs) == semi_homogeneous_batches(labels, **kwargs)
    with pytest.raises(HarnessError, match="no training table"):
        RowTable(tmp_path / "absent.arrow")
    (tmp_path / "bad.arrow").write_text("not arrow")
    with pytest.raises(HarnessError, match="not a readable training table"):
        RowTable(tmp_path / "bad.arrow")


def test_dedup_keys_behave_like_a_set_of_pairs() -> None:
    rng = np.random.default_rng(1)
    pairs = [(f"query {int(a)}", f"passage {int(b)}") for a, b in rng.integers(0, 300, size=(60_000, 2))]
    pairs += [("ab", "c"), ("a", "bc")]  # same concatenation, different pair
    seen_set: set[tuple[str, str]] = set()
    expected = []
    for pair in pairs:
        expected.append(pair not in seen_set)
        seen_set.add(pair)
    keys = SeenKeys()
    keys.RECENT = 1000  # merge into the sorted array often
    got = []
    for start in range(0, len(pairs), 4096):
        got.extend(keys.add_new([dedup_key(q, p) for q, p in pairs[start : start + 4096]]))
    assert got == expected and len(keys._sorted) > 0  # the sorted array was used, not only the recent set


def test_quickstart_mix_counts_match_the_committed_card() -> None:
    """The unfiltered counts of the quickstart's control equal those in its committed data card."""
    from harness.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml")
    base = next(v for v in recipe.variants if not v.overrides)
    data = base.config.data.model_copy(update={"filter": None})
    _, card = build_mix(data)
    committed = json.loads((REPO / "results" / "quickstart" / "base" / "seed-0" / "data_card.json").read_text())
    assert card["sources"] == committed["sources"]
    for key in ("rows", "tasks", "rows_with_instruction", "sources_with_weight_0"):
        assert card[key] == committed[key], key


@pytest.mark.slow
def test_quickstart_filtered_card_matches_the_committed_card(fresh_cache: Path) -> None:
    """Filter included (real minilm teacher, hard negatives mined from its ranks): rebuilding a
    committed quickstart variant's data gives its committed card — every count, the mining screen's
    quantiles, the ranking key and the content hash — so the committed results are what the code makes.

    The teacher's scores move with the CPU (precision, kernel sums: near-ties flip), so the rebuild
    runs as the CPU that made the committed results ran: in another process with that capability
    simulated (and torch's kernels held to AVX2 when that CPU was one). Only the machine record differs."""
    committed = json.loads((REPO / "results" / "quickstart" / "no-tables" / "seed-0" / "data_card.json").read_text())
    made_on = committed["filter"]["teacher"]["machine"]
    env = ({"HARNESS_SIMULATE_CPU": "AVX512_BF16"} if made_on["bf16_native"] else
           {"HARNESS_SIMULATE_CPU": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    out = in_another_process(
        "import json\n"
        "from harness.recipe import load_recipe\n"
        "from harness.train.stage import build_data\n"
        "recipe = load_recipe('recipes/quickstart.yaml')\n"
        "variant = next(v for v in recipe.variants if v.name == 'no-tables')\n"
        "card = build_data(variant.run_config(0), show_progress=False)\n"
        "print(json.dumps(card))\n", **env)
    card = json.loads(out.strip().splitlines()[-1])
    card.pop("built")
    committed.pop("contamination")
    committed.pop("instruction_budget", None)  # added at publish, from the eval tasks
    for c in (card, committed):
        c.pop("lengths", None)  # token lengths: measured at publish, from the eval tasks too
    for c in (card, committed):
        c["filter"]["teacher"].pop("machine")
    assert card == committed


KILL_SCRIPT = """
import sys
from harness.config import VariantConfig
from harness.train.stage import build_data
build_data(VariantConfig.model_validate({"data": {"hard_negatives": 3, "sources": {
    "big": {"kind": "flag-jsonl", "path": sys.argv[1]}}}}), show_progress=False)
"""


@pytest.mark.slow
def test_a_killed_data_stage_leaves_no_table_and_the_rerun_builds_it(tmp_path: Path, fresh_cache: Path) -> None:
    from harness.stages import data_stage
    from harness.train.stage import build_data

    source = tmp_path / "big.jsonl"
    with source.open("w") as handle:
        for i in range(60_000):
            handle.write(json.dumps({"query": f"query {i} " * 5, "pos": [f"positive {i} " * 10],
                                     "neg": [f"negative {i} {j} " * 10 for j in range(4)]}) + "\n")
    config = VariantConfig.model_validate({"data": {"hard_negatives": 3, "sources": {
        "big": {"kind": "flag-jsonl", "path": str(source)}}}})
    stage = data_stage(config)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(source)], env=env)
    deadline = time.monotonic() + 120
    spool = None
    while time.monotonic() < deadline and proc.poll() is None:
        spool = next(iter(stage.dir.parent.glob(f".{stage.hash}.*.tmp/.spool/source-0.arrow")), None) \
            if stage.dir.parent.is_dir() else None
        if spool is not None and spool.stat().st_size > 1_000_000:
            break
        time.sleep(0.05)
    assert proc.poll() is None and spool is not None, "the stage finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not stage.done() and not (stage.dir / TABLE_FILE).exists()  # no table under the final name
    card = build_data(config, show_progress=False)
    assert card["built"] and stage.done() and card["rows"] == 60_000
    table = RowTable(stage.dir / TABLE_FILE)
    assert len(table) == 60_000 and table[59_999].query == "query 59999 " * 5 and len(table[0].neg) == 3
    assert build_data(config)["built"] is False
