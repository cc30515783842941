"""Train/test contamination on the offline suite's real data (stdlib code pairs, CLDR bitext)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from harness.data.contamination import (
    HASH_FEATURES,
    NGRAM,
    contamination_report,
    expected_recall,
    normalise,
    task_texts,
)
from harness.data.offline.cldr_bitext import cldr_bitext
from harness.data.offline.stdlib_code import stdlib_code_pairs
from harness.evaluate.tasks import get_task

CODE_TASK = "HarnessCodeRetrieval"
CLDR_TASK = "HarnessCLDRBitextMining"


def _code_texts(split: str) -> list[str]:
    return [text for pair in stdlib_code_pairs(split) for text in (pair.query, pair.code)]


def _cldr_texts(split: str) -> list[str]:
    return [text for pairs in cldr_bitext(split).values() for pair in pairs for text in (pair.english, pair.other)]


@pytest.fixture(scope="module")
def suite() -> dict[str, object]:
    """The offline suite: training texts of both sources, their two harness tasks, and one report."""
    train = _code_texts("train") + _cldr_texts("train")
    tasks = {CODE_TASK: get_task(CODE_TASK), CLDR_TASK: get_task(CLDR_TASK)}
    return {"train": train, "tasks": tasks, "report": contamination_report(train, tasks)}


def test_normalise_folds_unicode_case_whitespace_and_edge_punctuation() -> None:
    assert normalise("Ｈｅｌｌｏ,\u00a0 ＷＯＲＬＤ！") == "hello, world"  # NFKC full-width + nbsp, casefold
    assert normalise("\ufb01ne  tuning\n\tdata") == "fine tuning data"  # the "fi" ligature, whitespace runs
    assert normalise("Stra\u00dfe") == normalise("STRASSE") == "strasse"  # casefold, not lower(): ß -> ss
    assert normalise("Cafe\u0301") == normalise("Caf\u00e9")  # combining accent composed by NFKC
    assert normalise("\u00ab\u00a0Bonjour\u00a0!\u00a0\u00bb") == "bonjour"  # French quotes and spacing
    assert normalise('"Handle a single HTTP request."') == normalise("handle a single HTTP request")
    # Only the edges: inner punctuation stays (code keeps its meaning), a closing bracket at the end goes.
    assert normalise("f(a, b)") == "f(a, b"
    assert normalise("f(a, b)") != normalise("f(ab)")
    assert normalise(" ... ") == ""


def test_task_texts_of_the_harness_tasks_are_their_test_splits(suite: dict) -> None:
    tasks = suite["tasks"]
    code_test = stdlib_code_pairs("test")
    assert task_texts(tasks[CODE_TASK]) == [p.query for p in code_test] + [p.code for p in code_test]
    cldr = cldr_bitext("test")
    expected = [text for pairs in cldr.values() for p in pairs for text in (p.english, p.other)]
    assert sorted(task_texts(tasks[CLDR_TASK])) == sorted(expected)


def test_offline_train_split_barely_overlaps_its_test_task(suite: dict) -> None:
    report = suite["report"]
    json.dumps(report)  # goes into data_card.json as is
    code, cldr = report["tasks"][CODE_TASK], report["tasks"][CLDR_TASK]
    assert report["train_texts"] == len(suite["train"]) == 30750
    assert (code["eval_texts"], code["eval_texts_distinct"]) == (2182, 2182)
    assert (cldr["eval_texts"], cldr["eval_texts_distinct"]) == (6402, 3374)

    # stdlib: the split is by module and pairs are de-duplicated by exact string, but two docstrings
    # in different modules differ only by the final full stop, which normalise() strips:
    # wsgiref.simple_server (train) "Handle a single HTTP request" vs http.server (test) "...request."
    assert code["exact"] == {"distinct": 1, "train_texts": 1, "eval_texts": 1,
                             "examples": ["Handle a single HTTP request."]}
    # CLDR: the split is by item key, but one spelling can name different items: Somali "Bangladesh"
    # is the Bangla *language* (test) and English "Bangladesh" the territory (train); Spanish/Portuguese
    # "Caribe" = Caribbean (test) vs French "caribe" = the Carib language (train, equal once casefolded);
    # Oromo "Giriik" = Greece (test) vs Somali "Giriik" = Greek (train); English "Kongo" = the Kongo
    # language (test) vs Hausa/Somali "Kongo" = Congo-Brazzaville (train).
    assert cldr["exact"] == {"distinct": 4, "train_texts": 20, "eval_texts": 15,
                             "examples": ["Bangladesh", "Caribe", "Giriik", "Kongo"]}

    # Near-duplicates at cosine >= 0.9: sibling docstrings and copied function bodies across modules,
    # and CLDR names that differ by a particle or word order ("suisse allemand" / "allemand suisse").
    assert code["near_duplicates"]["train_texts"] == 5
    assert cldr["near_duplicates"]["train_texts"] == 17
    top_code = code["near_duplicates"]["examples"][0]
    assert top_code["train"].startswith("Release a semaphore, incrementing the internal counter by one")
    assert top_code["eval"].endswith("by one or more.")
    assert 0.9 <= top_code["similarity"] < 1
    assert ("suisse allemand", "allemand suisse", 1.0) in {
        (e["train"], e["eval"], e["similarity"]) for e in cldr["near_duplicates"]["examples"]}
    # Touched: exact + near, as distinct eval texts. In code one eval text is hit both ways: the train
    # docstring "Handle a single HTTP GET request." is a near-duplicate of the exact match above.
    assert code["eval_texts_touched"] == 1 + 5 - 1 and cldr["eval_texts_touched"] == 4 + 17
    assert code["share_eval_touched"] == round(5 / 2182, 6)
    # The cheap index stays well inside the default budget on the offline suite.
    assert code["near_duplicates"]["checks"] < 200_000 and cldr["near_duplicates"]["checks"] < 200_000


def _change_one_word(code: str) -> str:
    words = list(re.finditer(r"\b[a-z_]{5,}\b", code))
    word = words[len(words) // 2]
    return code[:word.start()] + "renamed" + code[word.end():]


def test_planted_test_texts_are_found_exactly_and_edited_ones_as_near_duplicates(suite: dict) -> None:
    code_task = suite["tasks"][CODE_TASK]
    train = _code_texts("train")
    before = contamination_report(train, {CODE_TASK: code_task})["tasks"][CODE_TASK]
    bodies = sorted(p.code for p in stdlib_code_pairs("test") if len(p.code) >= 400)
    picked = [bodies[i] for i in np.random.default_rng(0).choice(len(bodies), 40, replace=False)]
    verbatim, to_edit = picked[:20], picked[20:]
    cosmetic = [" ".join(text.upper().split()) + "  " for text in verbatim]  # exact after normalise
    edited = ["  " + _change_one_word(text).swapcase() for text in to_edit]  # one word really differs
    after = contamination_report(train + verbatim + cosmetic + edited, {CODE_TASK: code_task})["tasks"][CODE_TASK]

    assert after["exact"]["distinct"] == before["exact"]["distinct"] + 20
    assert after["exact"]["train_texts"] == before["exact"]["train_texts"] + 40  # verbatim + cosmetic copies
    assert after["exact"]["eval_texts"] == before["exact"]["eval_texts"] + 20
    assert after["near_duplicates"]["train_texts"] == before["near_duplicates"]["train_texts"] + 20
    assert after["near_duplicates"]["eval_texts"] == before["near_duplicates"]["eval_texts"] + 20
    assert after["eval_texts_touched"] == before["eval_texts_touched"] + 40
    # The closest edited copies come first in the examples, with a similarity just below 1.
    examples = after["near_duplicates"]["examples"]
    assert all(0.9 <= e["similarity"] < 1 for e in examples)
    assert {e["train"] for e in examples} <= {text[:199] + "…" if len(text) > 200 else text for text in edited}


def test_planting_in_a_multilingual_task(suite: dict) -> None:
    cldr_task = suite["tasks"][CLDR_TASK]
    train = _cldr_texts("train")
    seen = {normalise(text) for text in train}
    unseen = {normalise(p.other): p.other for pairs in cldr_bitext("test").values() for p in pairs}
    planted = [unseen[key] for key in sorted(unseen) if key not in seen][:20]
    before = contamination_report(train, {CLDR_TASK: cldr_task}, near_duplicates=False)["tasks"][CLDR_TASK]
    after = contamination_report(train + planted, {CLDR_TASK: cldr_task}, near_duplicates=False)["tasks"][CLDR_TASK]
    assert after["exact"]["distinct"] == before["exact"]["distinct"] + 20
    assert after["near_duplicates"] == {"skipped": "near-duplicate check turned off"}


@pytest.mark.slow
def test_near_duplicate_index_misses_no_pair_a_full_comparison_finds() -> None:
    """Brute force: every training text against every eval text, same vectors, no index."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    train, evals, threshold = _code_texts("train"), _code_texts("test"), 0.7
    got = contamination_report(train, {"code": evals}, threshold=threshold, max_near_checks=10**9)["tasks"]["code"]

    eval_norm = sorted({normalise(t) for t in evals} - {""})
    train_norm = sorted({normalise(t) for t in train} - {""} - set(eval_norm))
    hashing = HashingVectorizer(analyzer="char_wb", ngram_range=(NGRAM, NGRAM), n_features=HASH_FEATURES,
                                alternate_sign=False, norm=None, lowercase=False)
    eval_counts = hashing.transform(eval_norm)
    tfidf = TfidfTransformer(sublinear_tf=True).fit(eval_counts)
    similarity = (tfidf.transform(hashing.transform(train_norm)) @ tfidf.transform(eval_counts).T).toarray()
    close = similarity >= threshold - 1e-6
    assert got["near_duplicates"]["train_texts"] == int(close.any(axis=1).sum()) > 20
    assert got["near_duplicates"]["eval_texts"] == int(close.any(axis=0).sum())
    assert got["near_duplicates"]["candidate_pairs"] < similarity.size / 20  # and it scored far fewer pairs


@pytest.mark.slow
def test_beyond_the_budget_minhash_lsh_runs_and_the_report_says_so(suite: dict) -> None:
    report = contamination_report(_code_texts("train"), {CODE_TASK: suite["tasks"][CODE_TASK]}, max_near_checks=100)
    task = report["tasks"][CODE_TASK]
    near = task["near_duplicates"]
    assert near["method"] == "minhash-lsh" and "max_near_checks=100" in near["reason"]
    assert near["num_perm"] == 128 and near["bands"] * near["rows_per_band"] <= 128
    assert near["expected_recall_at_threshold"] == round(
        expected_recall(report["threshold"], near["bands"], near["rows_per_band"]), 4)
    assert task["exact"]["distinct"] == 1 and task["eval_texts_touched"] >= 1
    assert "MinHashLSH" in report["near_duplicate_method_at_scale"]
    default = contamination_report(_code_texts("train"), {CODE_TASK: suite["tasks"][CODE_TASK]})
    assert default["tasks"][CODE_TASK]["near_duplicates"]["method"] == "tfidf-cosine-prefix-filter"


def _edit_chars(text: str, share: float, rng: np.random.Generator) -> str:
    """Replace about `share` of the characters (Jaccard of 4-gram sets drops a few times faster)."""
    chars = list(text)
    for i in rng.choice(len(chars), max(1, int(share * len(chars))), replace=False):
        chars[i] = "#"
    return "".join(chars)


@pytest.mark.slow
def test_minhash_finds_planted_near_duplicates_at_the_stated_recall() -> None:
    """Planted edited copies of eval texts at Jaccard >= 0.8 among real training texts: every reported
    pair is real (exact Jaccard), and at least the stated recall of the planted ones are found."""
    from harness.data.contamination import _grams, jaccard

    evals = sorted({normalise(t) for t in _code_texts("test") if len(t) > 300} - {""})
    rng = np.random.default_rng(0)
    picked = [evals[i] for i in rng.choice(len(evals), 120, replace=False)]
    planted = {}
    for text in picked:
        copy = normalise(_edit_chars(text, 0.008, rng))
        planted[copy] = jaccard(_grams(copy), _grams(text))
    threshold = 0.8
    assert min(planted.values()) >= threshold and min(planted.values()) < 0.95  # near, not exact
    train = _code_texts("train")
    before = contamination_report(train, {"code": evals}, threshold=threshold, max_near_checks=0)["tasks"]["code"]
    after = contamination_report(train + list(planted), {"code": evals}, threshold=threshold,
                                 max_near_checks=0)["tasks"]["code"]
    near = after["near_duplicates"]
    assert near["method"] == "minhash-lsh"
    recall = near["expected_recall_at_threshold"]
    assert 0.99 <= recall < 1
    # Each training text is judged on its own, so the planted ones found = the difference.
    found = near["train_texts"] - before["near_duplicates"]["train_texts"]
    n = len(planted)
    assert recall * n - 3 * np.sqrt(n * recall * (1 - recall)) <= found <= n, (found, recall)
    for example in near["examples"]:  # verified pairs: the exact Jaccard is at or above the threshold
        assert example["similarity"] >= threshold
        if example["train"] in planted:
            assert example["similarity"] == pytest.approx(planted[example["train"]], abs=1e-4)


@pytest.mark.slow
def test_report_is_deterministic_and_sorted() -> None:
    evals = _cldr_texts("test")
    train = _cldr_texts("train")
    first = contamination_report(train, {"b": evals, "a": evals[:100]})
    second = contamination_report(list(reversed(train)), {"a": evals[:100], "b": evals})
    assert json.dumps(first) == json.dumps(second)
    assert list(first["tasks"]) == ["a", "b"]


MOCK_TEXTS = {
    "MockSTSTask": ["This is a test sentence", "This is another test sentence",
                    "dette er en test sætning", "denne her matche ikke den ovenstående"],
    "MockPairClassificationTask": ["This is a test sentence", "This is another test sentence",
                                   "dette er en test sætning", "denne her matche ikke den ovenstående"],
    # the test split only: "This is another train sentence" is the classifier's training data
    "MockClassificationTask": ["This is a test sentence", "This is another test sentence"],
    "MockClusteringTask": ["This is a test sentence", "This is another test sentence", "This is a third test sentence"],
    # subsets eng and fra, each sentence1 then sentence2
    "MockMultilingualBitextMiningTask": 2 * ["This is a test sentence", "This is another test sentence",
                                             "dette er en test sætning", "denne her matche ikke den ovenstående"],
    # one split, one column per language
    "MockMultilingualParallelBitextMiningTask": ["This is a test sentence", "This is another test sentence",
                                                 "dette er en test sætning", "denne her matche ikke den ovenstående"],
    # eval splits val and test (same data); queries then corpus texts, titles left out
    "MockRetrievalTask": 2 * ["This is a test sentence", "This is another test sentence",
                              "This is a positive sentence", "This is another positive sentence"],
    # instructions are prompts, not data
    "MockInstructionRetrieval": ["This is a test sentence", "This is another test sentence",
                                 "This is a positive sentence", "This is another positive sentence"],
    # conversation turns flattened
    "MockRetrievalDialogTask": 2 * ["What is the weather like today?", "What is the capital of France?",
                                    "The capital of France is Paris.", "This is a positive sentence",
                                    "This is another positive sentence"],
}


@pytest.mark.parametrize("name", sorted(MOCK_TEXTS))
def test_task_texts_of_mteb_task_types(name: str) -> None:
    import mteb.mocks

    assert task_texts(getattr(mteb.mocks, name)()) == MOCK_TEXTS[name]


def test_report_on_mteb_mock_tasks() -> None:
    import mteb.mocks

    tasks = {name: getattr(mteb.mocks, name)() for name in
             ("MockSTSTask", "MockMultilingualSTSTask", "MockMultilingualPairClassificationTask")}
    train = ["THIS IS A TEST SENTENCE.", "Dette er en test sætning", "an unrelated training text"]
    report = contamination_report(train, tasks)
    for name, task in report["tasks"].items():
        assert task["exact"]["distinct"] == 2, name
        assert task["exact"]["examples"] == ["dette er en test sætning", "This is a test sentence"], name
    assert report["tasks"]["MockMultilingualSTSTask"]["exact"]["eval_texts"] == 4  # both subsets
    assert report["tasks"]["MockSTSTask"]["share_eval_touched"] == 0.5
