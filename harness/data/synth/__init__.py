"""Persona-based synthetic training data (KaLM / E5-mistral style) from a local or served LLM.

Heavy libraries (torch, transformers, datasets) load only when a backend or dataset is used.
"""

from harness.data.synth.backends import LLMBackend, OpenAICompatibleBackend, TransformersBackend
from harness.data.synth.generate import (
    card_path,
    check_example,
    check_instructions,
    load_personas,
    parse_example,
    progress_path,
    synthesize,
)
from harness.data.synth.prompts import ALL_KINDS

__all__ = [
    "ALL_KINDS",
    "LLMBackend",
    "OpenAICompatibleBackend",
    "TransformersBackend",
    "card_path",
    "check_example",
    "check_instructions",
    "load_personas",
    "parse_example",
    "progress_path",
    "synthesize",
]
