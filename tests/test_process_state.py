"""Functions that need a library setting for a while restore it: the rest of the process (a later
command, training, a test) sees the setting as it was."""

from __future__ import annotations


def test_measuring_token_lengths_leaves_transformers_verbosity_as_it_was() -> None:
    from transformers.utils import logging as hf_logging

    from harness.backbones.tokenizer_cache import forget_loaded
    from harness.lengths import load_tokenizer, token_counts

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        forget_loaded()  # a real load, inside the quiet block
        tokenizer = load_tokenizer("minilm")
        assert hf_logging.get_verbosity() == hf_logging.WARNING
        assert token_counts(tokenizer, ["word " * 1000])[0] > tokenizer.model_max_length  # measured, untruncated
        assert hf_logging.get_verbosity() == hf_logging.WARNING
    finally:
        hf_logging.set_verbosity(level)

