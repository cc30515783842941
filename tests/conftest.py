"""Test-wide settings: the Hub is off (a missing model fails at once), caches are private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HARNESS_CACHE", str(Path(os.environ.get("PYTEST_HARNESS_CACHE", "/tmp/harness-test-cache"))))
os.environ["MTEB_CACHE"] = str(Path(os.environ["HARNESS_CACHE"]) / "mteb")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty stage cache for tests that count what gets built (backbones stay shared)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    return cache


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
