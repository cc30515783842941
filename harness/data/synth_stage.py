"""The synthetic-data stage: generate once per synth config into the cache, resumably."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config import SynthConfig
from harness.hashing import content_hash
from harness.paths import cache_root


def make_backend(config: SynthConfig) -> Any:
    from harness.data.synth import OpenAICompatibleBackend, TransformersBackend

    if config.backend == "openai":
        assert config.base_url is not None
        return OpenAICompatibleBackend(config.base_url, config.model)
    return TransformersBackend(config.model)


def synthesize_to(config: SynthConfig, out_path: Path, *, show_progress: bool = True) -> dict[str, Any]:
    """Run generation into `out_path` (resumes from its progress file); returns the card."""
    from harness.data.synth import load_personas, synthesize

    personas = load_personas(config.personas, limit=config.personas_limit, seed=config.seed)
    return synthesize(make_backend(config), personas, n_examples=config.n_examples, kinds=config.kinds,
                      out_path=out_path, seed=config.seed, max_retries=config.max_retries,
                      show_progress=show_progress, languages=config.languages, temperature=config.temperature,
                      max_tokens=config.max_tokens, personas_source=config.personas)


def rows_path(config: SynthConfig) -> Path:
    return cache_root() / "synth" / content_hash(config.model_dump(mode="json")) / "rows.jsonl"


def synth_card(config: SynthConfig) -> dict[str, Any]:
    """The generation card (model, backend, prompt hash, seed, counts) for the data card."""
    card = rows_path(config).parent / "rows.jsonl.card.json"
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}


def synthesize_source(config: SynthConfig, *, show_progress: bool = True) -> Path:
    """The rows file of a synth source, generated on first use and cached by its config hash.

    An interrupted generation resumes where it stopped on the next run (same path)."""
    from harness.locks import locked

    out = rows_path(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    card = out.parent / "rows.jsonl.card.json"

    def complete() -> bool:
        return card.is_file() and bool(json.loads(card.read_text(encoding="utf-8")).get("complete"))

    if not complete():
        with locked(out, what=f"synthetic rows {out.parent.name}", done=lambda _: complete()):  # one writer
            if not complete():
                synthesize_to(config, out, show_progress=show_progress)
    return out
