"""One tiny ablate with a command-line override, then everything the cockpit adds to its outputs:
run.json overrides, lengths.json and the data card's lengths, the report's new sections and
training-curves figure, the train stage's card, and `export model`'s card with its model-index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main

from .conftest import write

TINY = """
description: cockpit end-to-end
seeds: [0, 1]
base:
  model: {backbone: tiny-qwen2, pooling: last_token, query_max_length: 16, passage_max_length: 64}
  data:
    total_rows: 32
    sources:
      stdlib-code: {weight: 1.0}
      cldr-bitext: {weight: 1.0, langs: [am, yo]}
  train: {steps: 3, batch_size: 8, lr: 1.0e-3, log_every: 1, bf16: false}
  eval: {tasks: [HarnessCodeRetrieval, HarnessCLDRBitextMining], languages: [amh, yor], batch_size: 64, bf16: false}
ablate:
  data.sources.cldr-bitext.weight: [0.0]
"""


@pytest.mark.slow
def test_cockpit_outputs_of_one_ablate(tmp_path: Path, fresh_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load
    from sentence_transformers import SentenceTransformer

    recipe = write(tmp_path / "cockpit.yaml", TINY)
    results = tmp_path / "results"
    assert main(["ablate", str(recipe), "train.lr=2e-3", "--results", str(results), "--no-leaderboard",
                 "--no-progress"]) == 0
    recipe_dir = results / "cockpit"
    run_dir = recipe_dir / "cldr-bitext.weight=0" / "seed-1"
    out, err = capsys.readouterr()
    assert "sweep: 4 runs," in out  # the compute estimate's total, before anything runs
    assert "sweep: 1/4 runs done · run 2:" in err and "sweep: 4/4 runs done · finished" in err
    assert json.loads((run_dir / "estimate.json").read_text())["examples"] == 3 * 8

    # overrides: recorded, and the config is the edited one
    run = json.loads((run_dir / "run.json").read_text())
    assert run["overrides"] == {"train.lr": 0.002}
    assert yaml.safe_load((run_dir.parent / "config.yaml").read_text())["config"]["train"]["lr"] == 0.002

    # what the model sees: query_max_length 16 cuts most code queries, which the run names
    lengths = json.loads((run_dir / "lengths.json").read_text())
    assert lengths["training"]["stdlib-code"]["query"]["cut_share"] > 0.05
    assert any(w.startswith("eval task HarnessCodeRetrieval: texts are cut") and "from its middle" in w
               for w in lengths["warnings"])
    assert json.loads((run_dir / "data_card.json").read_text())["lengths"] == lengths["training"]

    # local log: the new fields
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3] and all(e["grad_norm"] > 0 and e["tokens_per_second"] > 0
                                                          for e in log)

    # the report: curves figure, overrides, lengths
    report = (recipe_dir / "report.md").read_text()
    assert "## Training curves" in report and (recipe_dir / "plots" / "training_curves.png").stat().st_size > 1000
    assert "`train.lr=0.002` (4 run(s))" in report
    assert "## What the model sees" in report and "HarnessCodeRetrieval" in report
    assert "## Estimate vs actual" in report and "calibrated here" in report

    # the train stage's own card (no scores) loads, and so does the folder
    from harness.paths import cache_root

    checkpoint = cache_root() / run["checkpoint"]
    stage_card = ModelCard.load(checkpoint / "README.md")
    assert stage_card.data.library_name == "sentence-transformers" and "harness" in stage_card.data.tags
    assert "## Training data" in stage_card.text and stage_card.data.eval_results is None

    # export model: the full card with scores as model-index, and a loadable folder
    out = tmp_path / "exported"
    assert main(["export", "model", str(run_dir), "--out", str(out)]) == 0
    card = ModelCard.load(out / "README.md")
    meta = metadata_load(out / "README.md")
    assert meta["library_name"] == "sentence-transformers" and meta["language"] == ["en"]  # cldr weight 0
    assert "base_model" not in meta  # tiny-qwen2 is local: no Hub id to name
    scores = json.loads((run_dir / "scores.json").read_text())["tasks"]
    indexed = {(r.dataset_name, r.dataset_split): r.metric_value for r in card.data.eval_results}
    expected = {(f"{task} ({subset})", "test"): metrics["main_score"]
                for task, entry in scores.items() for subset, metrics in entry["subsets"].items()}
    assert indexed == expected
    assert meta["model-index"][0]["name"] == "harness-cockpit/cldr-bitext.weight=0-seed1"
    for text in ("Command-line overrides of the base: `train.lr=0.002`", "`data.sources.cldr-bitext.weight=0.0`",
                 "Sources with weight 0 (not used): cldr-bitext", "## Evaluation", "95% CI", "fp32",
                 "Contamination"):
        assert text in card.text, text
    model = SentenceTransformer(str(out), device="cpu")
    assert model.encode(["def f(): pass"]).shape[0] == 1
    assert main(["export", "model", str(run_dir), "--out", str(out)]) == 2  # never over a non-empty folder
