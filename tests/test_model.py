"""The embedder: pooling under both paddings, instructions, and the sentence-transformers export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.backbones import load_backbone
from harness.config import ModelConfig
from harness.errors import HarnessError
from harness.model import Embedder, format_query, pool

TEXTS = ["This is an example sentence", "def add(a, b):\n    return a + b", "Addis Ababa ni ketema ya Ethiopia " * 3]


@pytest.mark.slow
def test_minilm_reproduces_the_published_embedding() -> None:
    embedder = Embedder.from_config(ModelConfig(backbone="minilm"))
    vector = embedder.encode(["This is an example sentence"], max_length=64)[0]
    np.testing.assert_allclose(vector[:5], [0.0677, 0.0635, 0.0487, 0.0793, 0.0374], atol=1e-4)


@pytest.mark.parametrize("how", ["mean", "last_token", "cls"])
def test_pooling_is_the_same_for_left_and_right_padding(how: str) -> None:
    torch.manual_seed(0)
    lengths = [5, 2, 4]
    states = [torch.randn(n, 3) for n in lengths]
    width = max(lengths)

    def padded(side: str) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.zeros(len(states), width, 3)
        mask = torch.zeros(len(states), width, dtype=torch.long)
        for i, s in enumerate(states):
            sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
            hidden[i, sl], mask[i, sl] = s, 1
        return hidden, mask

    left = pool(*padded("left"), how, "left")
    right = pool(*padded("right"), how, "right")
    torch.testing.assert_close(left, right)
    expected = {"mean": torch.stack([s.mean(0) for s in states]),
                "last_token": torch.stack([s[-1] for s in states]),
                "cls": torch.stack([s[0] for s in states])}[how]
    torch.testing.assert_close(left, expected)


def test_instruction_template_is_kalms_and_query_side_only() -> None:
    template = ModelConfig().instruction_template
    assert format_query("where is x", "Find it.", template) == "Instruct: Find it. \n Query: where is x"
    assert format_query("where is x", None, template) == "where is x"


@pytest.mark.slow
def test_decoder_backbones_pad_left_and_batching_does_not_change_vectors() -> None:
    embedder = Embedder.from_config(ModelConfig(backbone="tiny-qwen2", pooling="last_token"))
    assert embedder.kind == "decoder" and embedder.tokenizer.padding_side == "left"
    together = embedder.encode(TEXTS, max_length=32, batch_size=3)
    alone = np.stack([embedder.encode([t], max_length=32)[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize(("backbone", "pooling", "normalize"),
                         [("minilm", "mean", True), ("minilm", "cls", False), ("tiny-qwen2", "last_token", True),
                          ("tiny-qwen2", "mean", True)])
@pytest.mark.slow
def test_saved_folder_loads_in_sentence_transformers_with_the_same_embeddings(
        tmp_path: Path, backbone: str, pooling: str, normalize: bool) -> None:
    """harness.st_folder writes the module files itself: every pooling mode, normalisation on and
    off and the query prompt must come back the same in the installed sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    from harness.instructions import RETRIEVAL

    config = ModelConfig(backbone=backbone, pooling=pooling, normalize=normalize, passage_max_length=64)
    embedder = Embedder.from_config(config)
    embedder.save(tmp_path / "model")
    ours = embedder.encode(TEXTS, max_length=64)
    st_model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert st_model.max_seq_length == 64
    st = st_model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(ours, st, atol=1e-5)
    if not normalize:
        assert not np.allclose(np.linalg.norm(st, axis=1), 1.0)  # no Normalize module was added
    queries = [format_query(t, RETRIEVAL, config.instruction_template) for t in TEXTS]
    np.testing.assert_allclose(st_model.encode(TEXTS, prompt_name="query", convert_to_numpy=True),
                               embedder.encode(queries, max_length=64), atol=1e-5)
    reloaded = Embedder.from_config(config, checkpoint=tmp_path / "model").encode(TEXTS, max_length=64)
    np.testing.assert_allclose(ours, reloaded, atol=1e-6)
    # and through mteb's own wrapper for sentence-transformers folders
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    wrapped = SentenceTransformerEncoderWrapper(str(tmp_path / "model"), device="cpu")
    np.testing.assert_allclose(wrapped.model.encode(TEXTS, convert_to_numpy=True), ours, atol=1e-5)


@pytest.mark.slow
def test_local_folder_goes_through_the_same_loader(tmp_path: Path) -> None:
    source = load_backbone("minilm")
    source.model.save_pretrained(tmp_path / "local")
    source.tokenizer.save_pretrained(tmp_path / "local")
    local = Embedder.from_config(ModelConfig(backbone=str(tmp_path / "local")))
    packaged = Embedder.from_config(ModelConfig(backbone="minilm"))
    np.testing.assert_allclose(local.encode(TEXTS, max_length=64), packaged.encode(TEXTS, max_length=64), atol=1e-6)


def test_missing_hub_model_fails_at_once_with_a_clear_message() -> None:
    with pytest.raises(HarnessError, match=r"HF_HUB_OFFLINE=1.*embedded backbone"):
        load_backbone("no-such-org/no-such-model")
    with pytest.raises(HarnessError, match="no such folder"):
        load_backbone("./definitely/not/here")
