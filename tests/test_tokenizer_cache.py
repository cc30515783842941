"""The per-process tokenizer cache: one real load per tokenizer content, copies that do not leak
their settings into each other, and a folder whose tokenizer changed is loaded again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.backbones import load_backbone, resolve_path
from harness.backbones.tokenizer_cache import forget_loaded, load_tokenizer_from

TEXTS = ["a query about parsing dates", "x"]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every real `AutoTokenizer.from_pretrained` call, by source."""
    from transformers import AutoTokenizer

    real = AutoTokenizer.from_pretrained.__func__  # type: ignore[attr-defined]
    seen: list[str] = []

    def counting(cls, source, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(str(source))
        return real(cls, source, *args, **kwargs)

    forget_loaded()
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", classmethod(counting))
    yield seen
    forget_loaded()


def test_one_load_for_identical_tokenizer_files_in_two_folders(tmp_path: Path, loads: list[str]) -> None:
    source = Path(resolve_path("tiny-qwen2"))
    loads.clear()  # building tiny-qwen2 on an empty machine cache loads the converted tokenizer
    copy_dir = tmp_path / "trained"
    shutil.copytree(source, copy_dir, ignore=shutil.ignore_patterns("*.safetensors"))  # weights are not keyed
    first = load_tokenizer_from(str(source))
    second = load_tokenizer_from(str(copy_dir))
    assert loads == [str(source)]  # the second folder's files hold the same bytes
    assert first is not second
    assert first(TEXTS)["input_ids"] == second(TEXTS)["input_ids"]

    # a changed tokenizer file in a folder is a new load
    config = copy_dir / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "model_max_length": 77}))
    assert load_tokenizer_from(str(copy_dir)).model_max_length == 77
    assert loads == [str(source), str(copy_dir)]


def test_copies_keep_their_own_settings_and_match_a_fresh_load(loads: list[str]) -> None:
    source = resolve_path("tiny-qwen2")
    loads.clear()
    left = load_backbone("tiny-qwen2").tokenizer  # a decoder: left padding, set on its copy
    plain = load_tokenizer_from(source)
    assert (left.padding_side, plain.padding_side) == ("left", "right")
    plain.pad_token = "<|im_end|>"
    plain.model_max_length = 5
    again = load_tokenizer_from(source)
    assert again.pad_token == "<|endoftext|>" and again.model_max_length != 5  # not leaked into the cache
    assert len(loads) == 1

    forget_loaded()
    reference = load_tokenizer_from(source)
    assert len(loads) == 2
    # the shared backend's padding and truncation are set per call: one call's settings never leak
    cut = again(TEXTS, padding=True, truncation=True, max_length=2)["input_ids"]
    assert [len(ids) for ids in cut] == [2, 2]
    assert again(TEXTS, padding=True)["input_ids"] == reference(TEXTS, padding=True)["input_ids"]
    assert left(TEXTS, padding=True)["input_ids"][1][0] == left.pad_token_id  # left padding
    assert again(TEXTS, padding=True)["input_ids"][1][-1] == again.pad_token_id  # right padding
