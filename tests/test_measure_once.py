"""Work a recipe's variants share is done once per process (token counts, source previews, task
resolution), and the memos never hand one input's result to another."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import VariantConfig
from harness.lengths import load_tokenizer, plan_lengths, source_rows_preview, token_counts, training_lengths
from harness.recipe import load_recipe

from .conftest import private_machine_cache, write


def _by_hand(tokenizer: object, texts: list[str]) -> list[int]:
    return [len(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts]  # type: ignore[operator]


def test_token_counts_are_keyed_by_texts_and_tokenizer() -> None:
    minilm, qwen = load_tokenizer("minilm"), load_tokenizer("tiny-qwen2")
    first = ["a short text", "Unbelievably tokenisable words here", "x"]
    second = ["a short text", "Unbelievably tokenisable words here", "y y y y y y"]  # one text differs
    assert token_counts(minilm, first) == _by_hand(minilm, first)
    assert token_counts(minilm, second) == _by_hand(minilm, second) != _by_hand(minilm, first)
    # the same texts with another tokenizer: its own counts, not the memoised ones
    assert token_counts(qwen, first) == _by_hand(qwen, first) != _by_hand(minilm, first)
    # order is part of the key; a caller editing its result does not edit the memo
    assert token_counts(minilm, first[::-1]) == _by_hand(minilm, first)[::-1]
    counts = token_counts(minilm, first)
    counts[0] = -1
    assert token_counts(minilm, first) == _by_hand(minilm, first)


def _config(langs: list[str]) -> VariantConfig:
    return VariantConfig.model_validate({"model": {"backbone": "minilm"}, "data": {
        "sources": {"cldr-bitext": {"weight": 1.0, "langs": langs}}}})


def test_source_previews_are_keyed_by_the_source_settings() -> None:
    memo: dict = {}
    yoruba, _, _ = source_rows_preview(_config(["yo"]), memo)
    hausa, _, _ = source_rows_preview(_config(["ha"]), memo)  # same source name, other settings
    assert len(memo) == 2
    assert [r.pos for r in hausa] == [r.pos for r in source_rows_preview(_config(["ha"]))[0]]  # as without memo
    assert [r.pos for r in yoruba] != [r.pos for r in hausa]
    again, _, _ = source_rows_preview(_config(["yo"]), memo)
    assert len(memo) == 2 and [r.pos for r in again] == [r.pos for r in yoruba]


def test_plan_lengths_equal_a_fresh_measurement_per_variant() -> None:
    """Two variants sharing the code source and differing in the bitext one: each group's training
    lengths are what measuring that variant alone gives."""
    a = VariantConfig.model_validate({"model": {"backbone": "minilm"}, "data": {"sources": {
        "stdlib-code": {"weight": 1.0}, "cldr-bitext": {"weight": 1.0, "langs": ["yo"]}}}})
    b = a.model_copy(deep=True)
    b.data.sources["cldr-bitext"].langs = ["ha", "sw"]
    groups = plan_lengths({"a": (a, []), "b": (b, [])}, {})
    assert len(groups) == 2
    for group, config in zip(groups, (a, b), strict=True):
        alone = training_lengths(config, source_rows_preview(config)[0])
        assert group.lengths["training"] == alone
    assert groups[0].lengths["training"]["stdlib-code"] == groups[1].lengths["training"]["stdlib-code"]
    assert groups[0].lengths["training"]["cldr-bitext"] != groups[1].lengths["training"]["cldr-bitext"]


def test_variants_with_the_same_eval_share_tasks_and_others_get_their_own(tmp_path: Path) -> None:
    from harness.pipeline import task_revisions

    recipe = load_recipe(write(tmp_path / "r.yaml", """
name: shared
base:
  eval: {tasks: [HarnessCLDRBitextMining], languages: [amh, hau]}
variants:
  lr: {train.lr: 1.0e-4}
  more: {eval.tasks: [HarnessCLDRBitextMining, HarnessFEBRLRecordSTS]}
"""))
    tasks = task_revisions(recipe)
    assert sorted(tasks) == ["HarnessCLDRBitextMining", "HarnessFEBRLRecordSTS"]
    assert sorted(tasks["HarnessCLDRBitextMining"][0].hf_subsets) == ["eng-amh", "eng-hau"]


def _group(name: str, config: VariantConfig, query: list[int], passage: list[int]) -> object:
    from harness.lengths import PlanGroup, summarize

    training = {"stdlib-code": {"rows": 10, "query": summarize(query, config.model.query_max_length),
                        "passage": summarize(passage, config.model.passage_max_length)}}
    return PlanGroup([name], config, [], {"training": training, "eval": {}}, "test", 10, 0.0)


@pytest.mark.slow
def test_one_probe_per_model_and_training_settings(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    """Variants that differ only in their data share one calibration probe, each at its own lengths;
    other training settings get their own probe."""
    from harness import estimates

    private_machine_cache(tmp_path / "machine", monkeypatch)
    config = VariantConfig.model_validate({"model": {"backbone": "tiny-qwen2", "query_max_length": 16,
                                                     "passage_max_length": 32},
                                           "data": {"sources": {"stdlib-code": {}}},
                                           "train": {"batch_size": 4, "bf16": False}})
    short = _group("short", config, [4] * 9 + [8], [10] * 9 + [20])
    other_data = config.model_copy(deep=True)
    other_data.data.sources["stdlib-code"].weight = 0.5
    long = _group("long", other_data, [12] * 10, [30] * 10)
    probes: list[tuple] = []
    real_probe = estimates.measure_throughput

    def counted(*args):  # noqa: ANN002, ANN202
        probes.append(args[1:])
        return real_probe(*args)

    monkeypatch.setattr(estimates, "measure_throughput", counted)
    out = estimates.sweep_estimates([short, long], 1, None)
    assert len(probes) == 1 and probes[0][:2] == (8.0, 20.0)  # short's padded lengths (p95s)
    padded_rate, _ = estimates.calibrate(config, 8.0, 20.0, 0)  # the machine cache: no new steps
    # each variant: the probe's rate per padded token x its own real / padded tokens per example
    assert out["short"].tokens_per_second == padded_rate * (4.4 + 11.0) / (8 + 20)
    assert out["long"].tokens_per_second == padded_rate * (12 + 30) / (12 + 30)
    assert "of short (same model" in out["long"].throughput_source
    bigger = config.model_copy(deep=True)
    bigger.train.batch_size = 8
    estimates.sweep_estimates([short, _group("bigger", bigger, [4] * 10, [10] * 10)], 1, None)
    assert len(probes) == 2  # short read the machine cache; bigger is another training setting
