"""Work a recipe's variants share is done once per process (token counts, source previews, task
resolution), and the memos never hand one input's result to another."""

from __future__ import annotations

from pathlib import Path

from harness.config import VariantConfig
from harness.lengths import load_tokenizer, plan_lengths, source_rows_preview, token_counts, training_lengths
from harness.recipe import load_recipe

from .conftest import write


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
