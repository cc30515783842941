"""The offline suite's first two sources on real data: stdlib code pairs and CLDR bitext.

Both feed training (train split) and evaluation (test split), so the checks that matter most are
disjoint, deterministic splits, a unique gold per query, and sizes large enough to score.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.data.offline import cldr_bitext as cldr
from harness.data.offline import stdlib_code
from harness.data.offline.cldr_bitext import DEFAULT_LANGS, LANG_TO_MTEB, BitextPair, cldr_bitext
from harness.data.offline.stdlib_code import MAX_CODE_CHARS, SKIPPED_DIRS, CodePair, stdlib_code_pairs
from harness.errors import HarnessError

AFRICAN = ("am", "ha", "ig", "yo", "sw", "xh", "zu", "om", "so")


@pytest.fixture(scope="module")
def code_splits() -> dict[str, list[CodePair]]:
    return {split: stdlib_code_pairs(split) for split in ("train", "test")}


@pytest.fixture(scope="module")
def bitext_splits() -> dict[str, dict[str, list[BitextPair]]]:
    return {split: cldr_bitext(split) for split in ("train", "test")}


# --- stdlib code retrieval ---------------------------------------------------------------------


def test_stdlib_splits_share_no_module_query_or_document(code_splits: dict[str, list[CodePair]]) -> None:
    train, test = code_splits["train"], code_splits["test"]
    assert not {p.module for p in train} & {p.module for p in test}
    assert not {p.query for p in train} & {p.query for p in test}
    assert not {p.code for p in train} & {p.code for p in test}
    assert not {p.id for p in train} & {p.id for p in test}


def test_stdlib_split_is_by_module_hash(code_splits: dict[str, list[CodePair]]) -> None:
    for split, pairs in code_splits.items():
        assert all(stdlib_code.split_of(p.module) == split for p in pairs)
    modules = {p.module for pairs in code_splits.values() for p in pairs}
    held_out = sum(stdlib_code.split_of(m) == "test" for m in modules) / len(modules)
    assert 0.12 < held_out < 0.28  # about one module in five


def test_stdlib_sizes_are_real(code_splits: dict[str, list[CodePair]]) -> None:
    # Python 3.11.7 gives 2789 train / 1091 test pairs from 251 / 63 modules.
    assert len(code_splits["train"]) >= 2400
    assert len(code_splits["test"]) >= 900
    assert len({p.module for p in code_splits["test"]}) >= 50


def test_stdlib_pairs_are_well_formed_and_unique(code_splits: dict[str, list[CodePair]]) -> None:
    everything = code_splits["train"] + code_splits["test"]
    for pairs in code_splits.values():
        assert [p.id for p in pairs] == sorted(p.id for p in pairs)
    assert len({p.query for p in everything}) == len(everything)  # one gold document per query
    assert len({p.code for p in everything}) == len(everything)
    for pair in everything:
        assert len(pair.query.split()) >= 4 and pair.query == " ".join(pair.query.split())
        assert 0 < len(pair.code) <= MAX_CODE_CHARS
        assert pair.code.startswith(("def ", "async def ")), pair.id  # dedented, decorators not kept
        assert sum(1 for line in pair.code.splitlines()[1:] if line.strip()) >= 2, pair.id
        assert not SKIPPED_DIRS & set(pair.module.split(".")), pair.id
        assert pair.id.startswith(pair.module + ":")


def test_stdlib_known_functions(code_splits: dict[str, list[CodePair]]) -> None:
    by_id = {p.id: (split, p) for split, pairs in code_splits.items() for p in pairs}

    split, dedent = by_id["textwrap:dedent"]
    assert split == "train"
    assert dedent.query == "Remove any common leading whitespace from every line in `text`."
    assert dedent.code.startswith("def dedent(text):\n")
    assert "Remove any common" not in dedent.code and '"""' not in dedent.code
    assert "margin = None" in dedent.code and dedent.code.rstrip().endswith("return text")

    split, decode = by_id["json.decoder:JSONDecoder.decode"]  # a method, in the held-out module
    assert split == "test"
    assert decode.query.startswith("Return the Python representation of ``s``")
    assert decode.code.startswith("def decode(self, s, _w=WHITESPACE.match):\n    obj, end = self.raw_decode(")

    # Test packages are excluded, and so is `numbers`: its methods are all abstract stubs.
    assert not any(p.module.startswith(("test.", "idlelib", "lib2to3", "numbers")) for _, p in by_id.values())


def test_stdlib_documents_are_valid_code_with_a_real_body(code_splits: dict[str, list[CodePair]]) -> None:
    """Removing the docstring must leave parseable code whose body does something."""
    checked = 0
    for pair in code_splits["train"] + code_splits["test"]:
        if len(pair.code) >= MAX_CODE_CHARS - 200:
            continue  # possibly truncated mid-statement
        (function,) = ast.parse(pair.code).body
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)), pair.id
        assert ast.get_docstring(function) is None, pair.id
        trivial = len(function.body) == 1 and (
            isinstance(function.body[0], ast.Pass)
            or (isinstance(function.body[0], ast.Raise) and "NotImplementedError" in ast.unparse(function.body[0]))
        )
        assert not trivial, pair.id
        checked += 1
    assert checked > 3000


_FRESH_PARSE = """
import dataclasses, hashlib, json
from harness.data.offline.stdlib_code import stdlib_code_pairs
splits = {split: [dataclasses.asdict(p) for p in stdlib_code_pairs(split)] for split in ("train", "test")}
print(hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest())
"""


@pytest.mark.slow
def test_stdlib_is_deterministic(code_splits: dict[str, list[CodePair]], tmp_path: Path) -> None:
    """This session's pairs (read from the machine cache, or parsed here) equal a fresh parse in
    another process, with an empty machine cache and another string-hash seed."""
    import dataclasses
    import hashlib
    import json
    import os
    import subprocess
    import sys

    ours = {split: [dataclasses.asdict(p) for p in pairs] for split, pairs in code_splits.items()}
    digest = hashlib.sha256(json.dumps(ours, sort_keys=True).encode()).hexdigest()
    env = {**os.environ, "HARNESS_MACHINE_CACHE": str(tmp_path / "empty"), "PYTHONHASHSEED": "12345"}
    fresh = subprocess.run([sys.executable, "-c", _FRESH_PARSE], env=env, capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == digest
    assert list((tmp_path / "empty" / "stdlib-code").glob("*.json")), "the other process really parsed"


@pytest.mark.slow
def test_stdlib_disk_cache_gives_the_parse_and_survives_a_corrupt_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sysconfig

    monkeypatch.setenv("HARNESS_MACHINE_CACHE", str(tmp_path))
    root = Path(sysconfig.get_paths()["stdlib"])
    some = stdlib_code._library_files(root)[:150]  # a slice of the library keeps this test fast
    monkeypatch.setattr(stdlib_code, "_library_files", lambda _root: some)
    parsed = stdlib_code._parse_library(root, some)
    assert len(parsed) > 50
    stdlib_code.all_stdlib_code_pairs.cache_clear()
    assert stdlib_code.all_stdlib_code_pairs() == parsed  # parsed, then stored
    (stored,) = (tmp_path / "stdlib-code").glob("*.json")
    stdlib_code.all_stdlib_code_pairs.cache_clear()
    assert stdlib_code.all_stdlib_code_pairs() == parsed  # read back from disk
    stored.write_text("{not json")
    stdlib_code.all_stdlib_code_pairs.cache_clear()
    assert stdlib_code.all_stdlib_code_pairs() == parsed  # a corrupt file is parsed again, and replaced
    assert stored.read_text().startswith("[")
    stdlib_code.all_stdlib_code_pairs.cache_clear()


def test_stdlib_unknown_split() -> None:
    with pytest.raises(HarnessError, match="'train', 'test'"):
        stdlib_code_pairs("dev")  # type: ignore[arg-type]


# --- CLDR bitext -------------------------------------------------------------------------------


def test_cldr_keys_never_cross_splits_in_any_language(bitext_splits: dict[str, dict[str, list[BitextPair]]]) -> None:
    train_keys = {p.key for pairs in bitext_splits["train"].values() for p in pairs}
    test_keys = {p.key for pairs in bitext_splits["test"].values() for p in pairs}
    assert not train_keys & test_keys
    for split, by_lang in bitext_splits.items():
        assert all(cldr.split_of(p.key) == split for pairs in by_lang.values() for p in pairs)


def test_cldr_pairs_have_a_unique_nontrivial_gold(bitext_splits: dict[str, dict[str, list[BitextPair]]]) -> None:
    for lang in DEFAULT_LANGS:
        everything = bitext_splits["train"][lang] + bitext_splits["test"][lang]
        assert len({p.english for p in everything}) == len(everything), lang
        assert len({p.other for p in everything}) == len(everything), lang
        assert all(p.english.casefold() != p.other.casefold() and p.lang == lang for p in everything)
        for pairs in (bitext_splits["train"][lang], bitext_splits["test"][lang]):
            assert [p.key for p in pairs] == sorted(p.key for p in pairs)


def test_cldr_sizes_are_real(bitext_splits: dict[str, dict[str, list[BitextPair]]]) -> None:
    # babel 2.19: the smallest African test split is Igbo with 77 pairs (most Igbo names are English).
    sizes = {lang: len(pairs) for lang, pairs in bitext_splits["test"].items()}
    for lang in AFRICAN:
        assert sizes[lang] >= 70, (lang, sizes[lang])
        assert len(bitext_splits["train"][lang]) >= 4 * 70, lang
    assert sizes["rw"] >= 10  # Kinyarwanda: only language and month names, kept anyway
    for lang in ("fr", "de", "es", "zh", "ar", "hi", "ru", "pt", "ja"):
        assert sizes[lang] >= 150, (lang, sizes[lang])


def test_cldr_known_translations(bitext_splits: dict[str, dict[str, list[BitextPair]]]) -> None:
    def lookup(lang: str, key: str) -> tuple[str, BitextPair]:
        for split, by_lang in bitext_splits.items():
            for pair in by_lang[lang]:
                if pair.key == key:
                    return split, pair
        raise AssertionError(f"{key} missing for {lang}")

    assert lookup("fr", "territory:DE") == ("train", BitextPair("territory:DE", "Germany", "Allemagne", "fr"))
    assert lookup("fr", "month:3")[1].other == "mars"
    assert lookup("de", "language:fr")[1].other == "Französisch"
    # A held-out key is held out in every language that has it.
    for lang in ("fr", "sw", "am"):
        split, pair = lookup(lang, "territory:005")
        assert split == "test" and pair.english == "South America"
    assert lookup("sw", "territory:005")[1].other == "Amerika Kusini"
    # Names identical to the English one are dropped ("France" is "France" in French).
    assert all(p.key != "territory:FR" for by_lang in bitext_splits.values() for p in by_lang["fr"])


def test_cldr_is_deterministic_and_subsettable(bitext_splits: dict[str, dict[str, list[BitextPair]]]) -> None:
    import dataclasses
    import hashlib
    import json

    from .conftest import in_another_process

    def digest(splits: dict[str, list[BitextPair]]) -> str:
        as_json = {lang: [dataclasses.asdict(p) for p in pairs] for lang, pairs in sorted(splits.items())}
        return hashlib.sha256(json.dumps(as_json, sort_keys=True).encode()).hexdigest()

    child = in_another_process(
        "import dataclasses, hashlib, json\n"
        "from harness.data.offline.cldr_bitext import cldr_bitext\n"
        "splits = cldr_bitext('test')\n"
        "as_json = {lang: [dataclasses.asdict(p) for p in pairs] for lang, pairs in sorted(splits.items())}\n"
        "print(hashlib.sha256(json.dumps(as_json, sort_keys=True).encode()).hexdigest())\n", hash_seed="7")
    assert child.strip() == digest(bitext_splits["test"])  # another process, another string-hash seed
    only_months = cldr_bitext("train", langs=["yo"], kinds=["month"])
    assert set(only_months) == {"yo"}
    assert only_months["yo"] == [p for p in bitext_splits["train"]["yo"] if p.key.startswith("month:")]


def test_cldr_unknown_language_names_code_and_allowed() -> None:
    with pytest.raises(HarnessError) as error:
        cldr_bitext("test", langs=["fr", "xx"])
    message = str(error.value)
    assert "'xx'" in message and "allowed" in message and "am" in message and "zu" in message
    with pytest.raises(HarnessError, match="allowed: territory"):
        cldr_bitext("test", kinds=["planet"])


def test_cldr_language_codes_are_valid_for_mteb() -> None:
    from mteb.languages import check_language_code

    for code in [cldr.ENGLISH_MTEB, *LANG_TO_MTEB.values()]:
        check_language_code(code)  # raises ValueError on an unknown ISO 639-3 or script code
    assert set(DEFAULT_LANGS) == set(LANG_TO_MTEB)
    assert {LANG_TO_MTEB[lang] for lang in ("am", "om", "ig", "yo", "ha", "sw", "rw", "xh", "zu")} == {
        f"{iso}-{'Ethi' if iso == 'amh' else 'Latn'}"
        for iso in ("amh", "gaz", "ibo", "yor", "hau", "swh", "kin", "xho", "zul")  # AfriMTEB-Lite
    }
