"""The full-scale KaLM recipe's code path on this CPU: a local Qwen2 folder stands in for
Qwen/Qwen2-0.5B (same loader), `extends: kalm-v1.yaml` keeps every KaLM setting that fits
(bf16: auto, gradient checkpointing, Matryoshka, hard negatives, checkpoints, both attention modes);
and a variant with `train.nproc: 2` goes through torchrun (gloo) from `ablate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data.offline.stdlib_code import stdlib_code_pairs
from harness.paths import cache_root
from harness.recipe import load_recipe

from .conftest import REPO, write


def _local_qwen2(folder: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2Model

    from harness.backbones.qwen_tokenizer import qwen2_tokenizer

    torch.manual_seed(1)
    config = Qwen2Config(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    Qwen2Model(config).save_pretrained(folder)
    qwen2_tokenizer().save_pretrained(folder)
    return folder


def _flag_rows(path: Path, n: int = 48) -> Path:
    pairs = stdlib_code_pairs("train")[:n]
    lines = [json.dumps({"query": p.query, "pos": [p.code], "neg": [pairs[(i + 7) % n].code]})
             for i, p in enumerate(pairs)]
    return write(path / "code" / "stdlib.jsonl", "\n".join(lines) + "\n").parent


def test_kalm_v1_is_the_papers_configuration() -> None:
    recipe = load_recipe(REPO / "recipes" / "kalm-v1.yaml")
    base = recipe.base
    assert base.model.backbone == "Qwen/Qwen2-0.5B" and base.model.pooling == "mean"
    assert base.model.attention == "causal" and base.model.passage_max_length == 512
    assert base.train.temperature == 0.01 and base.train.lr == 1e-5 and base.train.warmup_ratio == 0.1
    assert base.train.batch_size == 48 and base.data.hard_negatives == 7 and base.train.epochs == 1
    assert base.train.matryoshka is not None
    assert base.train.matryoshka.dims == [896, 512, 256, 128, 64]
    assert base.train.matryoshka.weights == [1.0, 0.3, 0.2, 0.1, 0.1]
    assert base.model.instruction_template == "Instruct: {instruction} \n Query: "
    assert base.data.sources["kalm-finetune"].dataset == "KaLM-Embedding/KaLM-embedding-finetuning-data"


@pytest.mark.slow
@pytest.mark.precision  # tests `bf16: auto` as this machine (or HARNESS_SIMULATE_CPU) resolves it
def test_kalm_v1_code_path_with_a_local_qwen2_folder(tmp_path: Path, fresh_cache: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from sentence_transformers import SentenceTransformer

    from harness.config import ModelConfig
    from harness.model import Embedder

    folder = _local_qwen2(tmp_path / "local-qwen2")
    data = _flag_rows(tmp_path / "data")
    recipe = write(tmp_path / "kalm-small.yaml", f"""
extends: {REPO / "recipes" / "kalm-v1.yaml"}
seeds: [0]
base:
  model: {{backbone: {folder}, query_max_length: 32, passage_max_length: 48}}
  data:
    hard_negatives: 1
    sources:
      kalm-finetune: {{weight: 0.0}}
      mine: {{kind: flag-jsonl, path: {data}, weight: 1.0}}
  train:
    nproc: 1
    batch_size: 4
    steps: 3
    checkpoint_every: 1
    matryoshka: {{dims: [64, 32], weights: [1.0, 0.3]}}
  eval: {{benchmarks: [], tasks: [HarnessCLDRBitextMining], languages: [yor], batch_size: 128}}
ablate:
  model.attention: [bidirectional]
""")
    results = tmp_path / "results"
    assert main(["ablate", str(recipe), "--results", str(results), "--leaderboard", str(tmp_path / "lb.md"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("trained: 3 steps") == 2
    # kalm-v1 says `bf16: auto`: bf16 only where this machine runs it natively, and it says which
    import torch

    from harness.devices import resolve_precision

    expected = resolve_precision("auto", torch.device("cpu"))
    assert "train: device cpu (" in out and f"precision {expected.name}" in out
    for variant, attention in (("base", "causal"), ("attention=bidirectional", "bidirectional")):
        run = results / "kalm-small" / variant / "seed-0"
        summary = json.loads((run / "train_summary.json").read_text())
        assert summary["steps"] == 3
        assert summary["precision"] == expected.name and summary["device"] == "cpu"
        assert json.loads((run / "run.json").read_text())["precision"] == {"train": expected.name,
                                                                            "eval": [expected.name]}
        checkpoint = cache_root() / json.loads((run / "run.json").read_text())["checkpoint"]
        meta = json.loads((checkpoint / "harness_embedder.json").read_text())
        assert meta["matryoshka_dims"] == [64, 32] and meta["attention"] == attention
        assert meta["sentence_transformers_exact"] is (attention == "causal")
        card = json.loads((run / "data_card.json").read_text())
        assert card["sources"]["mine"]["rows_kept"] == 48 and card["hard_negatives_per_row"] == 1.0
    # the causal checkpoint reproduces in sentence-transformers (to 1e-5)
    checkpoint = cache_root() / json.loads((results / "kalm-small" / "base" / "seed-0" / "run.json").read_text())["checkpoint"]
    texts = ["Return the sum of two numbers.", "def add(a, b):\n    return a + b"]
    ours = Embedder.from_config(ModelConfig(backbone=str(folder), passage_max_length=48),
                                checkpoint=checkpoint).encode(texts, max_length=48)
    st = SentenceTransformer(str(checkpoint), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, st, atol=1e-5)


@pytest.mark.slow
def test_ablate_launches_torchrun_for_multi_process_variants(tmp_path: Path, fresh_cache: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write(tmp_path / "ddp.yaml", """
seeds: [0]
base:
  model: {backbone: tiny-qwen2, query_max_length: 24, passage_max_length: 32}
  data: {total_rows: 64, sources: {stdlib-code: {}, cldr-bitext: {langs: [yo]}}}
  train: {steps: 2, batch_size: 4, nproc: 2, lr: 1.0e-3, log_every: 1}
  eval: {tasks: [HarnessCLDRBitextMining], languages: [yor]}
""")  # one variant: each torchrun launch costs a launcher and two fresh interpreters, and a launch keeps no state
    results = tmp_path / "results"
    assert main(["ablate", str(recipe), "--results", str(results), "--no-leaderboard", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("trained: 2 steps") == 1
    summary = json.loads((results / "ddp" / "base" / "seed-0" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch"] == 8
