"""Float32 master weights, export dtype, sentence-transformers round trips, content-keyed folders,
and the instruction-budget warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.backbones import load_backbone
from harness.config import ModelConfig, VariantConfig
from harness.data.rows import TrainRow
from harness.model import Embedder

# Every test here loads (and most train) a model; their tolerances are float32's, pinned per config.
pytestmark = [pytest.mark.slow, pytest.mark.precision]

TEXTS = ["where is the station", "def add(a, b):\n    return a + b", "Addis Ababa ni ketema ya Ethiopia " * 3]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def bf16_qwen_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 stored in bf16 with a Qwen chat template, as Qwen/Qwen2-0.5B is."""
    folder = tmp_path_factory.mktemp("qwen-bf16") / "model"
    source = load_backbone("tiny-qwen2")
    source.model.to(torch.bfloat16).save_pretrained(folder)
    source.tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    source.tokenizer.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    return folder


def _rows(n: int = 16) -> list[TrainRow]:
    return [TrainRow(query=f"question number {i} about topic {i % 3}", pos=[f"the answer to question {i}"],
                     neg=[f"an unrelated passage {i}"]) for i in range(n)]


def _fraction_changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], names: list[str]) -> float:
    changed = sum(int((before[n].float() != after[n].float()).sum()) for n in names)
    return changed / sum(before[n].numel() for n in names)


def test_bf16_stored_weights_load_and_train_in_float32(bf16_qwen_folder: Path, tmp_path: Path) -> None:
    """kalm-v1's full fine-tune at lr 1e-5: float32 master weights keep the AdamW updates."""
    from harness.train.loop import train

    loaded = load_backbone(str(bf16_qwen_folder)).model
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    config = VariantConfig.model_validate({
        "model": {"backbone": str(bf16_qwen_folder), "pooling": "mean", "query_max_length": 16,
                  "passage_max_length": 16},
        "train": {"steps": 1, "batch_size": 8, "lr": 1e-5, "warmup_ratio": 0.0, "weight_decay": 0.01,
                  "bf16": False, "grad_clip": None},
    })
    train(config, _rows(), tmp_path / "out", show_progress=False)
    after = load_backbone(str(tmp_path / "out")).model.state_dict()
    # Every weight that received a gradient, i.e. all but the rows of tokens absent from the batch.
    dense = [k for k in before if "embed_tokens" not in k]
    fraction = _fraction_changed(before, after, dense)
    assert fraction >= 0.95, f"only {fraction:.1%} of the trained weights changed"
    # What bf16 master weights would have kept: the same update applied in bf16 rounds most away.
    rounded = {k: (before[k].to(torch.bfloat16) + (after[k] - before[k]).to(torch.bfloat16)) for k in dense}
    assert _fraction_changed(before, rounded, dense) < 0.5 * fraction


def test_lora_merges_into_float32_weights(bf16_qwen_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from harness.train.loop import train

    config = VariantConfig.model_validate({
        "model": {"backbone": str(bf16_qwen_folder), "pooling": "mean", "query_max_length": 16,
                  "passage_max_length": 16},
        "train": {"steps": 2, "batch_size": 8, "lr": 1e-3, "bf16": False, "lora": {"r": 4, "alpha": 8}},
    })
    before = load_backbone(str(bf16_qwen_folder)).model.state_dict()
    train(config, _rows(), tmp_path / "out", show_progress=False)
    after = load_backbone(str(tmp_path / "out")).model.state_dict()
    projections = [k for k in before if any(f"{p}.weight" in k for p in ("q_proj", "k_proj", "v_proj", "o_proj"))]
    assert _fraction_changed(before, after, projections) >= 0.95


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_export_of_a_chat_template_qwen_reads_right_in_sentence_transformers(
        bf16_qwen_folder: Path, tmp_path: Path, dtype: str) -> None:
    """sentence-transformers >= 6 would wrap inputs in a saved chat template: the export has none."""
    from safetensors import safe_open
    from sentence_transformers import SentenceTransformer

    config = ModelConfig(backbone=str(bf16_qwen_folder), pooling="mean", passage_max_length=64)
    embedder = Embedder.from_config(config)
    assert embedder.tokenizer.chat_template  # the source folder carries one
    embedder.save(tmp_path / "export", dtype=dtype)
    assert not (tmp_path / "export" / "chat_template.jinja").exists()
    assert json.loads((tmp_path / "export" / "tokenizer_config.json").read_text()).get("chat_template") is None
    modality = json.loads((tmp_path / "export" / "sentence_bert_config.json").read_text()).get("modality_config")
    assert modality is None or list(modality) == ["text"]
    with safe_open(str(tmp_path / "export" / "model.safetensors"), "pt") as f:
        stored = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert stored == {"F32" if dtype == "float32" else "BF16"}

    reference = Embedder.from_config(config, checkpoint=tmp_path / "export")  # what the harness evaluates
    ours = reference.encode(TEXTS, max_length=64)
    st = SentenceTransformer(str(tmp_path / "export"), device="cpu", model_kwargs={"dtype": torch.float32})
    theirs = st.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    if dtype == "float32":
        np.testing.assert_allclose(ours, embedder.encode(TEXTS, max_length=64), atol=1e-6)


def test_a_local_backbone_is_keyed_by_its_contents(tmp_path: Path, fresh_cache: Path) -> None:
    from harness.stages import train_stage

    folder = tmp_path / "backbone"
    shutil.copytree(load_backbone("tiny-qwen2").source, folder)
    config = VariantConfig.model_validate({"model": {"backbone": str(folder)},
                                           "data": {"sources": {"stdlib-code": {}}}})
    first = train_stage(config).hash
    assert train_stage(config).hash == first  # stable, and the digest cache is reused
    model = load_backbone(str(folder)).model
    with torch.no_grad():
        model.norm.weight.add_(0.01)  # different weights, same shapes and file size
    model.save_pretrained(folder)
    assert train_stage(config).hash != first
    data_config = VariantConfig.model_validate({"data": {"sources": {"stdlib-code": {}},
                                                         "filter": {"teacher": str(folder), "top_k": None}}})
    from harness.stages import data_stage

    teacher_keyed = data_stage(data_config).hash
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    assert data_stage(data_config).hash != teacher_keyed


def test_the_instruction_budget_warns_when_little_query_is_left() -> None:
    from harness.budget import instruction_budget

    long = ("Given a column of a database table with its header and sample values, retrieve the columns of "
            "other tables that hold the same attribute")
    tight = instruction_budget(ModelConfig(backbone="tiny-qwen2", query_max_length=32), {long: 40, "Find code.": 10})
    left = {e["instruction"]: e["query_tokens_left"] for e in tight["instructions"]}
    assert left[long] < 8 <= left["Find code."]
    assert len(tight["warnings"]) == 1 and "40 training row(s)" in tight["warnings"][0]
    roomy = instruction_budget(ModelConfig(backbone="tiny-qwen2", query_max_length=128), {long: 40})
    assert roomy["warnings"] == [] and roomy["instructions"][0]["query_tokens_left"] >= 8


def test_the_eval_log_warns_once_per_task_when_the_instruction_eats_the_query() -> None:
    from harness.evaluate.encoder import HarnessEncoder
    from harness.evaluate.resolve import resolve_tasks
    from harness.config import EvalConfig

    lines: list[str] = []
    config = ModelConfig(backbone="minilm", query_max_length=12)
    encoder = HarnessEncoder(Embedder.from_config(config), name="t/budget", revision="0", log=lines.append,
                             show_progress=False)
    task = resolve_tasks(EvalConfig(tasks=["HarnessValentineColumnMatching"]))["HarnessValentineColumnMatching"]
    from mteb.types import PromptType

    batch = [{"text": ["year", "state name"]}]
    for _ in range(2):
        encoder.encode(batch, task_metadata=task.metadata, hf_split="test", hf_subset="default",
                       prompt_type=PromptType.query)
    assert len(lines) == 1 and "HarnessValentineColumnMatching" in lines[0] and "of 12 query tokens" in lines[0]
