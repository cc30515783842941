"""`tiny-qwen2`: the Qwen2 architecture at toy size with the real Qwen2 tokenizer.

Random weights (seeded) make it useless as an embedder but exact as a *code path*: left
padding, last-token pooling, the 151,936-row vocabulary and the decoder attention of
Qwen2-0.5B, at ~0.3 s a training step. Saved once to the cache so it loads like any folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from harness.atomic import owner_tag
from harness.errors import HarnessError
from harness.hashing import content_hash
from harness.locks import build_once, locked
from harness.paths import machine_cache_root

TINY_QWEN2 = {
    "vocab_size": 151936,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
}
INIT_SEED = 0
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def tiny_qwen2_path(cache_dir: Path | None = None) -> Path:
    """Where the tiny Qwen2 folder lives (built or not): keyed by its config and init seed.

    In the machine cache, beside the bf16 calibration: it is a fact of the installed packages, not
    a stage output, so every stage cache on the machine shares one copy (it takes ~8 s to build)."""
    return (cache_dir or machine_cache_root() / "backbones") / f"tiny-qwen2-{content_hash([TINY_QWEN2, INIT_SEED])}"


def _complete(folder: Path) -> bool:
    """A loadable tiny-qwen2 folder holds its config, weights and tokenizer files."""
    return all((folder / name).is_file() for name in FILES)


def _save_weights(model: Any, folder: Path) -> None:
    """Write config.json + model.safetensors whatever the process's distributed rank.

    `PreTrainedModel.save_pretrained` silently writes nothing on a rank other than 0 once
    torch.distributed is initialised (transformers >= 5, `should_save_on_this_rank`): a rank 1 that
    won the build lock on an empty machine cache then committed a folder holding only the tokenizer,
    and every later load failed ("Should have a model_type key"). The config's own save and
    safetensors do not look at the rank; the bytes are those save_pretrained writes on rank 0.
    """
    from safetensors.torch import save_file

    model.config.save_pretrained(folder)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _discard_incomplete(folder: Path) -> None:
    """Move aside a folder an older version committed incomplete (see `_save_weights`), under the
    build lock, so build_once builds it again instead of every run failing on it."""
    if not folder.exists() or _complete(folder):
        return
    with locked(folder, what="the tiny-qwen2 backbone"):
        if folder.exists() and not _complete(folder):
            trash = folder.parent / f".{folder.name}.{owner_tag()}.{secrets.token_hex(4)}.tmp"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)


def tiny_qwen2_folder(cache_dir: Path | None = None) -> Path:
    """Build (once) and return the folder of the seeded tiny Qwen2 model + tokenizer."""
    folder = tiny_qwen2_path(cache_dir)

    def build(tmp: Path) -> None:
        import torch
        from transformers import Qwen2Config, Qwen2Model

        from harness.backbones.qwen_tokenizer import qwen2_tokenizer

        tokenizer = qwen2_tokenizer(padding_side="left")
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(INIT_SEED)
        try:
            model = Qwen2Model(Qwen2Config(**TINY_QWEN2))
        finally:
            torch.random.set_rng_state(generator_state)
        _save_weights(model, tmp)
        tokenizer.save_pretrained(tmp)
        if not _complete(tmp):  # never rename an incomplete folder into place
            missing = [name for name in FILES if not (tmp / name).is_file()]
            raise HarnessError(f"building tiny-qwen2 in {tmp} wrote no {', '.join(missing)}")

    _discard_incomplete(folder)
    # Always through build_once: on a hit it only cleans a killed builder's staging (a folder
    # exists only complete, renamed into place, so it is a hit exactly when config.json is there).
    build_once(folder, build, what="the tiny-qwen2 backbone")
    return folder
