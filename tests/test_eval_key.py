"""One eval stage key for variants and baselines (stages.eval_task_stage): the two cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness.evaluator
from harness.config import VariantConfig
from harness.devices import SIMULATED_CPU_ENV
from harness.evaluate.baseline import baseline_stages
from harness.evaluate.resolve import eval_revision, resolve_tasks
from harness.stages import eval_stage, eval_task_stage, train_stage

TASK = "HarnessCodeRetrieval"
CONFIG = VariantConfig.model_validate({"data": {"sources": {"stdlib-code": {}}}, "eval": {"tasks": [TASK]}})


def _both(model_hash: str) -> tuple[dict, dict]:
    """(variant's eval key without its train hash, baseline's eval key without its model hash)."""
    tasks = resolve_tasks(CONFIG.eval)
    variant = eval_stage(CONFIG, TASK, eval_revision(tasks[TASK])).key
    baseline = baseline_stages(model_hash, CONFIG.eval, tasks)[TASK].key
    assert variant["train"] == train_stage(CONFIG).hash and baseline["baseline"] == model_hash
    return ({k: v for k, v in variant.items() if k != "train"}, {k: v for k, v in baseline.items() if k != "baseline"})


@pytest.mark.parametrize("cpu", ["AVX2", "AVX512_BF16"])
def test_a_baseline_and_a_variant_have_the_same_eval_key_but_the_model(
        cpu: str, monkeypatch: pytest.MonkeyPatch, fresh_cache: Path) -> None:
    monkeypatch.setenv(SIMULATED_CPU_ENV, cpu)
    variant, baseline = _both("0123456789ab")
    assert variant == baseline  # every field but the model: task, revision, precision, evaluator
    assert baseline["precision"] == ("fp32" if cpu == "AVX2" else "bf16")
    revision = eval_revision(resolve_tasks(CONFIG.eval)[TASK])
    built = eval_task_stage(("baseline", "0123456789ab"), TASK, revision, baseline["precision"])
    assert built == baseline_stages("0123456789ab", CONFIG.eval)[TASK]


def test_a_new_mteb_version_or_precision_changes_both_keys(monkeypatch: pytest.MonkeyPatch,
                                                           fresh_cache: Path) -> None:
    monkeypatch.setenv(SIMULATED_CPU_ENV, "AVX2")
    before = _both("0123456789ab")
    installed = harness.evaluator.evaluator_identity
    monkeypatch.setattr(harness.evaluator, "evaluator_identity", lambda: {"mteb": "0.0.1"})
    newer = _both("0123456789ab")
    assert newer[0] == newer[1] and newer[0]["evaluator"] == {"mteb": "0.0.1"}
    assert newer[0] != before[0] and newer[1] != before[1]
    monkeypatch.setattr(harness.evaluator, "evaluator_identity", installed)
    monkeypatch.setenv(SIMULATED_CPU_ENV, "AVX512_BF16")  # `bf16: auto` now resolves to bf16
    other = _both("0123456789ab")
    assert other[0]["precision"] == other[1]["precision"] == "bf16" != before[0]["precision"]
