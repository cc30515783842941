"""`tiny-qwen2`: the Qwen2 architecture at toy size with the real Qwen2 tokenizer.

Random weights (seeded) make it useless as an embedder but exact as a *code path*: left
padding, last-token pooling, the 151,936-row vocabulary and the decoder attention of
Qwen2-0.5B, at ~0.3 s a training step. Saved once to the cache so it loads like any folder.
"""

from __future__ import annotations

from pathlib import Path

from harness.hashing import content_hash
from harness.locks import build_once
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


def tiny_qwen2_path(cache_dir: Path | None = None) -> Path:
    """Where the tiny Qwen2 folder lives (built or not): keyed by its config and init seed.

    In the machine cache, beside the bf16 calibration: it is a fact of the installed packages, not
    a stage output, so every stage cache on the machine shares one copy (it takes ~8 s to build)."""
    return (cache_dir or machine_cache_root() / "backbones") / f"tiny-qwen2-{content_hash([TINY_QWEN2, INIT_SEED])}"


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
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    # Always through build_once: on a hit it only cleans a killed builder's staging (a folder
    # exists only complete, renamed into place, so it is a hit exactly when config.json is there).
    build_once(folder, build, what="the tiny-qwen2 backbone")
    return folder
