"""The mining rules (harness.data.mining) against hand computations on a small fixed ranking: which
candidates each rule keeps or removes as likely false negatives, hardest / random sampling with the
seed, padding that never re-admits a removed candidate, and the data card's counts and scores."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import FilterConfig, NegativesConfig
from harness.data.filtering import (
    TaskRanking,
    TeacherRanking,
    apply_filter,
    rows_fingerprint,
)
from harness.data.mining import MiningRule, relative_scores, rule_from_config, summarise
from harness.data.rows import TrainRow

# One task. Corpus: the ranked items plus H, I (never in a top list: reachable only as padding).
CORPUS = ["P0", "A", "B", "C", "D", "E", "F", "G", "H", "I"]
# Scores are binary fractions, exact in float32, so the "strictly below the ceiling" edge is exact.
# q0 (positive P0, score .875): P0 .875, A .8671875, B .84375, C .8125, D .75, E .6875, F .5, G .25
# q1 (positive A, score .625, existing negative G): A .625, P0 .609375, B .5625, C .5, D .4375, E .3125,
#   F .1875, G .0625
RANKED = {
    "q0": (["P0", "A", "B", "C", "D", "E", "F", "G"], [0.875, 0.8671875, 0.84375, 0.8125, 0.75, 0.6875, 0.5, 0.25]),
    "q1": (["A", "P0", "B", "C", "D", "E", "F", "G"], [0.625, 0.609375, 0.5625, 0.5, 0.4375, 0.3125, 0.1875, 0.0625]),
}
ROWS = [TrainRow("q0", ["P0"], [], task="t"), TrainRow("q1", ["A"], ["G"], task="t")]


def ranking() -> TeacherRanking:
    index = {t: i for i, t in enumerate(CORPUS)}
    task = TaskRanking(
        task="t", corpus=CORPUS,
        row_indices=np.array([0, 1], dtype=np.int64),
        query_of_row=np.array([0, 1], dtype=np.int32),
        top_indices=np.array([[index[t] for t in RANKED[q][0]] for q in ("q0", "q1")], dtype=np.int32),
        top_scores=np.array([RANKED[q][1] for q in ("q0", "q1")], dtype=np.float32),
        positive_score=np.array([0.875, 0.625], dtype=np.float32),
        positive_rank=np.array([0, 0], dtype=np.int32),
    )
    return TeacherRanking(teacher_id="fixed", depth=8, key="fixed", rows_fingerprint=rows_fingerprint(ROWS),
                          n_rows=2, tasks={"t": task})


def mine(rule: MiningRule, negatives: int = 2, seed: int = 0) -> tuple[dict[str, list[str]], dict]:
    kept, report = apply_filter(ROWS, ranking(), top_k=None, negatives=negatives, seed=seed, rule=rule)
    return {r.query: r.neg for r in kept}, report


@pytest.mark.parametrize(("rule", "q0", "q0_removed", "q1", "q1_removed"), [
    # perc_pos .95: q0 ceiling .83125 removes A, B; q1 ceiling .59375 removes P0 (G is an existing negative)
    (MiningRule("perc_pos", percent=0.95), ["C", "D"], 2, ["G", "B"], 1),
    # margin_pos .125: q0 ceiling .75 removes A, B, C and D (.75 is not *below* .75); q1 ceiling .5
    # removes P0, B and C
    (MiningRule("margin_pos", margin=0.125), ["E", "F"], 4, ["G", "D"], 3),
    # top_k_abs .75: q0 removes A B C D; q1 removes nothing (all of its candidates score below .75)
    (MiningRule("top_k_abs", max_score=0.75), ["E", "F"], 4, ["G", "P0"], 0),
    # window [2, 5), hardest: q0 ranks 2-4 = B C D, skipped rank 1 = A; q1 ranks 2-4 = B C D, skipped P0
    (MiningRule("window", window=(2, 5), sampling="hardest"), ["B", "C"], 1, ["G", "B"], 1),
])
def test_each_rule_against_the_hand_computation(rule: MiningRule, q0: list[str], q0_removed: int,
                                                 q1: list[str], q1_removed: int) -> None:
    negs, report = mine(rule)
    assert negs == {"q0": q0, "q1": q1}
    mining = report["tasks"]["t"]["mining"]
    assert mining["removed_as_false_negatives"] == q0_removed + q1_removed
    # screened candidates: q0's ranked items minus its positive; q1's minus its positive and existing G
    considered = 5 if rule.method == "window" else 8  # ranks [0, 5) or the whole depth
    assert mining["candidates"] == (considered - 1) + (considered - 1 - (rule.method != "window"))
    assert report["negatives"] == {"existing": 1, "mined": 3, "padding": 0, "missing": 0, "existing_discarded": 0}
    assert report["negatives_rule"]["method"] == rule.method


def test_scores_of_kept_negatives_relative_to_the_positive() -> None:
    _, report = mine(MiningRule("perc_pos", percent=0.95))
    # mined: q0 C .8125 and D .75 against .875; q1 B .5625 against .625
    ratios = np.array([0.8125 / 0.875, 0.75 / 0.875, 0.5625 / 0.625])
    margins = np.array([0.875 - 0.8125, 0.875 - 0.75, 0.625 - 0.5625])
    card = report["tasks"]["t"]["mining"]
    assert card["ratio_to_positive"] == summarise(ratios)
    assert card["margin_below_positive"] == summarise(margins)
    assert card["ratio_to_positive"]["n"] == 3 and card["ratio_to_positive"]["p100"] == pytest.approx(0.9286, abs=1e-4)
    assert card["ratio_to_positive"]["p100"] < 0.95  # every kept negative is below 95 % of its positive
    assert report["mining"]["removed_as_false_negatives"] == 3 and report["mining"]["ratio_to_positive"]["n"] == 3


def test_random_sampling_draws_eligible_candidates_with_the_seed() -> None:
    rule = MiningRule("perc_pos", percent=0.95, sampling="random")
    draws = {seed: mine(rule, negatives=3, seed=seed)[0]["q0"] for seed in range(12)}
    for negs in draws.values():
        assert set(negs) <= {"C", "D", "E", "F", "G"} and len(set(negs)) == 3
        assert negs == sorted(negs, key=RANKED["q0"][0].index)  # listed hardest first
    assert mine(rule, negatives=3, seed=5)[0]["q0"] == draws[5]  # the seed decides
    assert len({tuple(n) for n in draws.values()}) > 1
    # the window's default sampling is KaLM's random draw; the positive-aware rules' is hardest
    assert MiningRule("window").sampling_used == "random" and MiningRule("perc_pos").sampling_used == "hardest"


def test_padding_never_readmits_a_removed_candidate() -> None:
    # q0 under perc_pos has 5 eligible candidates; asking for 7 pads with 2 items from outside the
    # ranking (H, I): never A or B (removed as likely false negatives), never the positive.
    for seed in range(20):
        negs, report = mine(MiningRule("perc_pos", percent=0.95), negatives=7, seed=seed)
        assert negs["q0"][:5] == ["C", "D", "E", "F", "G"] and set(negs["q0"][5:]) == {"H", "I"}
        assert report["negatives"]["padding"] >= 2
    # the window keeps KaLM's padding: its skipped ranks may come back as random filler
    for seed in range(20):
        window_negs, _ = mine(MiningRule("window", window=(6, 8)), negatives=7, seed=seed)
        if {"A", "B"} & set(window_negs["q0"]):
            break
    else:
        pytest.fail("window padding never drew a skipped top-ranked item")


def test_rule_from_config_and_config_errors() -> None:
    spec = FilterConfig(negatives=NegativesConfig(method="perc_pos"), window=(10, 60))
    assert rule_from_config(spec) == MiningRule("perc_pos", window=(10, 60), percent=0.95)
    assert NegativesConfig(method="margin_pos").margin == 0.05
    with pytest.raises(ValueError, match="top_k_abs needs negatives.max_score"):
        NegativesConfig(method="top_k_abs")
    with pytest.raises(ValueError, match="margin belongs to method margin_pos, not perc_pos"):
        NegativesConfig(method="perc_pos", margin=0.1)
    with pytest.raises(ValueError, match="percent"):
        NegativesConfig(method="perc_pos", percent=1.5)


def test_negatives_recipe_is_a_3_by_2_grid_over_one_teacher_ranking(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import hub
    from harness.recipe import load_recipe
    from harness.stages import data_stage

    from .conftest import REPO

    recipe = load_recipe(REPO / "recipes" / "negatives.yaml")
    arms = {(v.config.data.filter.negatives.method, v.config.train.focal_gamma): v.config for v in recipe.variants}
    assert len(recipe.variants) == 6 and len(arms) == 6
    assert arms["perc_pos", 0.0].data.filter.negatives.percent == 0.95
    assert arms["margin_pos", 1.0].data.filter.negatives.margin == 0.05
    assert {tuple(c.data.filter.window) for c in arms.values()} == {(50, 100)}
    with hub.missing_revisions("warn"):  # offline: its Hub dataset and teacher stay unresolved
        data = {key: data_stage(config).hash for key, config in arms.items()}
    assert len(set(data.values())) == 3  # one data stage per rule; focal shares it
    assert all(data[method, 0.0] == data[method, 1.0] for method in ("window", "perc_pos", "margin_pos"))
    # the same teacher pass: teacher, depth and rows agree across every arm
    assert len({(c.data.filter.teacher, c.data.filter.depth, c.data.filter.max_length) for c in arms.values()}) == 1


def test_ceilings_and_a_positive_that_scores_below_zero() -> None:
    pos = np.array([0.5, -0.25], dtype=np.float32)
    assert MiningRule("perc_pos", percent=0.5).ceilings(pos).tolist() == [0.25, -0.375]  # below the positive
    assert MiningRule("margin_pos", margin=0.125).ceilings(pos).tolist() == [0.375, -0.375]
    assert MiningRule("top_k_abs", max_score=0.25).ceilings(pos).tolist() == [0.25, 0.25]
    assert MiningRule("window").ceilings(pos) is None
    card = relative_scores(np.array([0.25, -0.5]), pos)
    assert card["ratio_to_positive"] == summarise(np.array([0.5]))  # only where the positive is > 0
    assert card["margin_below_positive"] == summarise(np.array([0.25, 0.25]))
    assert card["positive_not_above_zero"] == 1
