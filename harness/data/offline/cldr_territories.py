"""Territory names in 20 languages (CLDR, as babel ships it), labelled by continent and territory.

The continent is the area of the first IANA time zone CLDR lists for the territory
(`territory_zones`: "NG" -> "Africa/Lagos"): Africa, America(s), Asia, Europe, and Pacific or
Australia as Oceania. Territories whose zones are oceans or poles (Indian, Atlantic, Antarctica,
Arctic) or have none are left out. Only the territories `cldr_bitext` holds out for evaluation
(its split by item key) are used, so the `cldr-bitext` training source never saw these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.data.offline.cldr_bitext import DEFAULT_LANGS, ENGLISH, LANG_TO_MTEB, Split, split_of

CONTINENTS = {"Africa": "Africa", "America": "Americas", "Asia": "Asia", "Europe": "Europe",
              "Pacific": "Oceania", "Australia": "Oceania"}
LANGS: tuple[str, ...] = (ENGLISH, *DEFAULT_LANGS)
MTEB_LANGS = ["eng-Latn", *(LANG_TO_MTEB[lang] for lang in DEFAULT_LANGS)]


@dataclass(frozen=True)
class TerritoryName:
    territory: str  # ISO 3166 code, e.g. "NG"
    continent: str
    lang: str  # babel code
    name: str


def continent_of(territory: str) -> str | None:
    from babel.core import get_global

    zones = get_global("territory_zones").get(territory) or []
    return CONTINENTS.get(zones[0].split("/")[0]) if zones else None


def territory_names(split: Split = "test") -> list[TerritoryName]:
    """Every distinct name of the split's territories in LANGS, sorted by (territory, lang).

    A name already taken (by another language, or another territory) is skipped, so each text
    has one label; so is a name the other split's bitext pairs contain for another item (Somali
    "Giriik" is Greece and Greek), so a held-out name is never a training text.
    """
    from babel import Locale

    from harness.data.offline.cldr_bitext import cldr_bitext

    english = Locale.parse(ENGLISH)
    codes = sorted(c for c in english.territories if re.fullmatch(r"[A-Z]{2}", c)
                   and split_of(f"territory:{c}") == split and continent_of(c))
    locales = {lang: Locale.parse(lang) for lang in LANGS}
    other_split: Split = "train" if split == "test" else "test"
    seen = {text for pairs in cldr_bitext(other_split, DEFAULT_LANGS).values() for p in pairs
            for text in (p.english, p.other)}
    names = []
    for code in codes:
        for lang in LANGS:
            name = (locales[lang].territories.get(code) or "").strip()
            if name and name not in seen:
                seen.add(name)
                names.append(TerritoryName(code, continent_of(code) or "", lang, name))
    return names
