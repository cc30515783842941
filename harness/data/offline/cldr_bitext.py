"""Multilingual bitext (English <-> other language) from the CLDR display names babel ships.

CLDR's territory, language, currency and month names are human translations made by native
speakers, and they exist for most of AfriMTEB-Lite's languages (am, ha, ig, yo, sw, xh, zu, om;
plus so; rw has only a handful of entries). Each item becomes a translation pair: a training
source (train split) and an mteb bitext-mining task (test split). The split is by item key and
shared across languages, so "territory:FR" seen in French training cannot leak into a Hausa test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.errors import HarnessError

Split = Literal["train", "test"]
TEST_SHARE_DENOMINATOR = 5  # one item key in five (by hash) is held out for evaluation

ENGLISH = "en"
ENGLISH_MTEB = "eng-Latn"

# babel locale code -> the ISO 639-3 + ISO 15924 code mteb uses for eval_langs (all accepted by
# mteb.languages.check_language_code; the African ones are AfriMTEB-Lite's codes).
LANG_TO_MTEB: dict[str, str] = {
    "am": "amh-Ethi",
    "ha": "hau-Latn",
    "ig": "ibo-Latn",
    "yo": "yor-Latn",
    "sw": "swh-Latn",
    "xh": "xho-Latn",
    "zu": "zul-Latn",
    "om": "gaz-Latn",
    "so": "som-Latn",
    "rw": "kin-Latn",
    "fr": "fra-Latn",
    "de": "deu-Latn",
    "es": "spa-Latn",
    "zh": "cmn-Hans",
    "ar": "arb-Arab",
    "hi": "hin-Deva",
    "ru": "rus-Cyrl",
    "pt": "por-Latn",
    "ja": "jpn-Jpan",
}
DEFAULT_LANGS: tuple[str, ...] = tuple(LANG_TO_MTEB)

# kind -> how to read its names (code -> display name) from a babel Locale.
_NAME_TABLES: dict[str, Callable[[Any], Mapping[Any, str]]] = {
    "territory": lambda locale: locale.territories,
    "language": lambda locale: locale.languages,
    "currency": lambda locale: locale.currencies,
    "month": lambda locale: locale.months["format"]["wide"],
}
DEFAULT_KINDS: tuple[str, ...] = tuple(_NAME_TABLES)


@dataclass(frozen=True)
class BitextPair:
    key: str  # "territory:FR", "language:de", "currency:EUR", "month:3"
    english: str
    other: str
    lang: str  # babel code


def split_of(key: str) -> Split:
    """The split an item belongs to, in every language: a pure function of its key."""
    held_out = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % TEST_SHARE_DENOMINATOR == 0
    return "test" if held_out else "train"


def cldr_bitext(
    split: Split,
    langs: Sequence[str] = DEFAULT_LANGS,
    kinds: Sequence[str] = DEFAULT_KINDS,
) -> dict[str, list[BitextPair]]:
    """Per language, the English/other name pairs of one split, sorted by key.

    Skipped: names missing on either side, names identical to the English one (ignoring case:
    nothing to learn or mine), and any later key repeating an English or other-language name
    already taken in that language, so every sentence has exactly one gold translation. The
    de-duplication runs before the split, so it does not depend on which split is asked for.
    """
    if split not in ("train", "test"):
        raise HarnessError(f"cldr bitext: unknown split {split!r}; allowed: 'train', 'test'")
    if isinstance(langs, str):
        langs = (langs,)  # a bare "fr" would otherwise be read as ("f", "r")
    unknown_langs = [lang for lang in langs if lang not in LANG_TO_MTEB]
    if unknown_langs:
        raise HarnessError(
            f"cldr bitext: unknown language code(s) {', '.join(map(repr, unknown_langs))}; "
            f"allowed: {', '.join(LANG_TO_MTEB)}"
        )
    unknown_kinds = [kind for kind in kinds if kind not in _NAME_TABLES]
    if unknown_kinds:
        raise HarnessError(
            f"cldr bitext: unknown kind(s) {', '.join(map(repr, unknown_kinds))}; allowed: {', '.join(_NAME_TABLES)}"
        )
    return {
        lang: [pair for pair in _unique_pairs(lang, tuple(kinds)) if split_of(pair.key) == split]
        for lang in langs
    }


def _unique_pairs(lang: str, kinds: tuple[str, ...]) -> list[BitextPair]:
    english = _names(ENGLISH, kinds)
    other = _names(lang, kinds)
    pairs: list[BitextPair] = []
    seen_english: set[str] = set()
    seen_other: set[str] = set()
    for key in sorted(other):
        english_name = english.get(key)
        other_name = other[key]
        if not english_name or not other_name or english_name.casefold() == other_name.casefold():
            continue
        if english_name in seen_english or other_name in seen_other:
            continue
        seen_english.add(english_name)
        seen_other.add(other_name)
        pairs.append(BitextPair(key=key, english=english_name, other=other_name, lang=lang))
    return pairs


def _names(lang: str, kinds: tuple[str, ...]) -> dict[str, str]:
    """Display names keyed "kind:code", whitespace-trimmed, for one babel locale."""
    from babel import Locale  # CLDR data loads lazily; keep CLI start-up fast

    locale = Locale.parse(lang)
    names: dict[str, str] = {}
    for kind in kinds:
        for code, name in _NAME_TABLES[kind](locale).items():
            if isinstance(name, str) and name.strip():
                names[f"{kind}:{code}"] = name.strip()
    return names
