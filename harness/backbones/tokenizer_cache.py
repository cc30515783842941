"""One tokenizer load per process for each distinct tokenizer.

Why: transformers 5 builds a Qwen2 tokenizer in Python from its 18.6 MB tokenizer.json (the JSON
parsed twice, a 151k-entry vocabulary and 151k merges rebuilt), about 2 s a load on an idle
2-core CPU and more on a busy one. One `ablate` loads the same tokenizer for every training, every
evaluated task, the length report and the instruction budget, and each trained model's folder
carries a byte-identical copy: about half of a tiny run's time went to reloading it. So the loaded
tokenizer is kept per process, keyed by what its files hold (not their path), and every caller
gets its own detached copy.

The copy's Python state (padding side, special tokens, chat template, init kwargs) is its own; the
Rust backend is shared, which is safe because transformers sets the backend's padding and
truncation on every call. Nothing in the harness adds tokens to a loaded tokenizer (that would
change the shared backend); the Qwen2 conversion builds its own.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.content import path_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The files `AutoTokenizer` reads from a folder: the tokenizer's own, config.json (it names the
# tokenizer class) and remote code. Weights, model cards and the harness's own records stay out of
# the key, so two trained variants of one backbone share one load.
_TOKENIZER_FILE_PREFIXES = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "spiece",
                            "sentencepiece", "chat_template", "config.json", "preprocessor_config")
_TOKENIZER_FILE_SUFFIXES = (".py", ".model", ".tiktoken")
_KEPT = 4  # distinct tokenizers held at once (a student and a teacher, with room to spare)

_lock = threading.Lock()
_loaded: OrderedDict[tuple[Any, ...], PreTrainedTokenizerBase] = OrderedDict()


def load_tokenizer_from(source: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """`AutoTokenizer.from_pretrained(source)`, loaded once per process per tokenizer content."""
    key = tokenizer_key(source, trust_remote_code)
    with _lock:
        loaded = _loaded.get(key)
        if loaded is not None:
            _loaded.move_to_end(key)
            return detached_copy(loaded)
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    with _lock:
        _loaded[key] = loaded
        while len(_loaded) > _KEPT:
            _loaded.popitem(last=False)
    return detached_copy(loaded)


def tokenizer_key(source: str, trust_remote_code: bool) -> tuple[Any, ...]:
    """A folder by the bytes of the files a tokenizer is loaded from; a Hub id by its name (one
    process sees one revision)."""
    folder = Path(source)
    if not folder.is_dir():
        return ("hub", source, trust_remote_code)
    files = sorted(f for f in folder.iterdir() if f.is_file() and (f.name.startswith(_TOKENIZER_FILE_PREFIXES)
                                                                   or f.name.endswith(_TOKENIZER_FILE_SUFFIXES)))
    # harness.content's one rule: each file's sha256, cached per machine by its (size, mtime, inode) stamp
    return ("folder", tuple((f.name, path_fingerprint(f)) for f in files), trust_remote_code)


def detached_copy(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A shallow copy whose containers are copied too: setting `pad_token` or `padding_side` on it
    leaves the cached tokenizer as it was (a plain `copy.copy` shares the special-tokens dict)."""
    clone = copy.copy(tokenizer)
    for name, value in vars(tokenizer).items():
        if isinstance(value, (dict, list, set)):
            setattr(clone, name, copy.copy(value))
    return clone


def forget_loaded() -> None:
    """Drop the kept tokenizers (a test that needs a real load, or a process done with them)."""
    with _lock:
        _loaded.clear()
