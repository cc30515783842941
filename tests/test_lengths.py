"""What the model sees: token lengths with the variant's own tokenizer, and the warning on cuts."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.config import ModelConfig, VariantConfig
from harness.data.rows import TrainRow
from harness.evaluate.tasks import get_task
from harness.lengths import eval_lengths, load_tokenizer, summarize, training_lengths, warnings

from .conftest import tiny_column_task, write


def _lengths(model: ModelConfig, task_dir: Path) -> dict:
    task = get_task(str(task_dir))
    return {"eval": eval_lengths(model, {task.metadata.name: task})}


def test_summary_matches_a_hand_count() -> None:
    stats = summarize([3, 5, 7, 9, 100, 4, 6, 8, 10, 2], limit=8)  # nearest rank: 5th and 10th of 10
    assert (stats["median"], stats["p95"], stats["max"], stats["cut_share"]) == (6, 100, 100, 0.3)


def test_tiny_task_over_its_limit_warns_and_names_itself(tmp_path: Path) -> None:
    folder = tiny_column_task(tmp_path / "task", "TinyCutColumns")
    model = ModelConfig(backbone="tiny-qwen2", pooling="last_token", query_max_length=8, passage_max_length=8)
    lengths = _lengths(model, folder)
    corpus = lengths["eval"]["TinyCutColumns"]["corpus"]
    # the same count by hand, with the same tokenizer: every corpus text is one candidate column
    tokenizer = load_tokenizer("tiny-qwen2")
    task = get_task(str(folder))
    task.load_data()
    texts = list(next(iter(task.dataset.values()))["test"]["corpus"]["text"])
    by_hand = sorted(len(tokenizer(t)["input_ids"]) for t in texts)
    assert corpus["texts"] == len(texts) and corpus["max"] == by_hand[-1]
    assert corpus["cut_share"] == pytest.approx(sum(c > 8 for c in by_hand) / len(by_hand))
    assert corpus["cut_share"] > 0.05
    found = warnings(lengths, model.pooling)
    assert len(found) == 1 and found[0].startswith("eval task TinyCutColumns: texts are cut")
    assert f"model.passage_max_length 8 (median {corpus['median']}, p95 {corpus['p95']}" in found[0]
    assert "pooled on a token from its middle" in found[0]

    roomy = ModelConfig(backbone="tiny-qwen2", pooling="last_token",
                        query_max_length=lengths["eval"]["TinyCutColumns"]["query"]["p95"] + 50,
                        passage_max_length=corpus["max"] + 1)
    assert warnings(_lengths(roomy, folder), roomy.pooling) == []
    mean = ModelConfig(backbone="tiny-qwen2", pooling="mean", query_max_length=8, passage_max_length=8)
    assert "middle" not in warnings(_lengths(mean, folder), "mean")[0]


def test_training_sources_by_their_own_limits() -> None:
    config = VariantConfig.model_validate({"model": {"backbone": "minilm", "instructions": False,
                                                     "query_max_length": 8, "passage_max_length": 64}})
    long_passage = "word " * 100
    rows = [TrainRow(query="short query", pos=[long_passage], source="long-docs") for _ in range(10)]
    rows += [TrainRow(query="q", pos=["a short passage"], neg=["another one"], source="short") for _ in range(5)]
    lengths = {"training": training_lengths(config, rows)}
    assert lengths["training"]["long-docs"]["passage"]["cut_share"] == 1.0
    assert lengths["training"]["short"]["passage"]["texts"] == 10  # positives and negatives
    assert lengths["training"]["short"]["passages_per_row"] == 2.0
    found = warnings(lengths, "mean")
    assert len(found) == 1 and found[0].startswith("training source long-docs:")


@pytest.mark.slow
def test_dry_run_prints_the_length_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tiny_column_task(tmp_path / "task", "TinyDryColumns")
    recipe = write(tmp_path / "r.yaml", f"""
base:
  model: {{backbone: tiny-qwen2, pooling: last_token, query_max_length: 8, passage_max_length: 8}}
  data: {{total_rows: 16, sources: {{cldr-bitext: {{weight: 1.0, langs: [yo]}}}}}}
  train: {{steps: 1, batch_size: 4}}
  eval: {{tasks: ["{folder}"]}}
""")
    assert main(["ablate", str(recipe), "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "what the model sees" in out and "TinyDryColumns" in out and "cldr-bitext" in out
    assert "warning: eval task TinyDryColumns: texts are cut" in out
