"""The sentence-transformers files of a saved model folder: modules.json and each module's config.

Why not `SentenceTransformer(modules=[Transformer(path), ...]).save(path)`, as before: its
`Transformer` module can only be built by loading the folder back (weights and tokenizer: ~2 s for
a Qwen2 tokenizer alone in transformers 5), and its save then writes the weights and tokenizer
again, the same bytes. For Qwen2-0.5B that was 2 GB read and 2 GB written twice per trained model,
and an import of sentence-transformers (with scikit-learn and scipy) in every training process.
The weights and tokenizer are already written by transformers' `save_pretrained`; what
sentence-transformers adds is these few JSON files, written here in the format sentence-transformers
has read since v2 and still reads (most embedding models on the Hub, all-MiniLM-L6-v2 among them,
are stored this way). tests/test_model.py loads every pooling mode back in the installed
sentence-transformers and through mteb's wrapper, and compares the vectors.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from harness import atomic

# sentence-transformers' names for the pooling modes the harness has.
_POOLING_FLAGS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                  "last_token": "pooling_mode_lasttoken"}
_ALL_FLAGS = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
              "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def write_sentence_transformers_modules(folder: Path, *, dim: int, pooling: Literal["mean", "cls", "last_token"],
                                        normalize: bool, max_seq_length: int, prompts: dict[str, str]) -> None:
    """Transformer (the folder itself) -> Pooling -> Normalize (when the harness normalises)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(parents=True, exist_ok=True)  # Normalize has no settings
    atomic.write_json(folder / "modules.json", modules)
    atomic.write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    atomic.write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim, **{flag: flag == _POOLING_FLAGS[pooling] for flag in _ALL_FLAGS},
        "include_prompt": True})
    atomic.write_json(folder / "config_sentence_transformers.json", {
        "__version__": {name: _installed(dist) for name, dist in (("sentence_transformers", "sentence-transformers"),
                                                                  ("transformers", "transformers"),
                                                                  ("pytorch", "torch"))},
        "prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"})


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None
