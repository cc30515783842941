"""Labels that Python's standard library gives its own docstrings and functions: the package a
function lives in. Two eval sets from the held-out modules of `stdlib_code` (the modules the
`stdlib-code` training source never sees):

* docstring classification: a function's docstring summary -> its top-level package (`email`,
  `asyncio`, `tarfile`, ...); the classifier's own train/test halves split by function id;
* code reranking: a docstring -> a candidate list of functions from the same module (its own
  body and up to `RERANK_CANDIDATES - 1` siblings), the shape of MTEB's reranking tasks.

Deterministic: every choice is a hash of names.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from harness.data.offline.stdlib_code import CodePair, stdlib_code_pairs

MIN_ITEMS_PER_LABEL = 16  # mteb samples 8 per label for its classifier; as many again to test on
MAX_ITEMS_PER_LABEL = 32  # keeps labels balanced (turtle alone has 110) and the task quick to embed
RERANK_CANDIDATES = 10
RERANK_MAX_QUERIES = 200
MIN_MODULE_FUNCTIONS = RERANK_CANDIDATES  # every query ranks a full candidate list of its siblings


def _rank(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def package_of(module: str) -> str:
    """The label: the top-level package (or module) name, e.g. "email.header" -> "email"."""
    return module.split(".")[0]


@dataclass(frozen=True)
class LabelledText:
    id: str
    text: str
    label: str


def docstring_classification() -> dict[str, list[LabelledText]]:
    """{"train": ..., "test": ...} for the classifier (both from held-out modules), sorted by id.

    Labels with fewer than MIN_ITEMS_PER_LABEL docstrings are dropped, larger ones keep
    MAX_ITEMS_PER_LABEL picked by hash; the halves split by a hash of the function id, so a
    function is in exactly one.
    """
    by_label: dict[str, list[CodePair]] = defaultdict(list)
    for pair in stdlib_code_pairs("test"):
        by_label[package_of(pair.module)].append(pair)
    halves: dict[str, list[LabelledText]] = {"train": [], "test": []}
    for label, pairs in sorted(by_label.items()):
        if len(pairs) < MIN_ITEMS_PER_LABEL:
            continue
        for pair in sorted(pairs, key=lambda p: _rank("sample", p.id))[:MAX_ITEMS_PER_LABEL]:
            half = "test" if int(_rank("classifier", pair.id), 16) % 2 else "train"
            halves[half].append(LabelledText(pair.id, pair.query, label))
    return {half: sorted(items, key=lambda x: x.id) for half, items in halves.items()}


@dataclass(frozen=True)
class RerankQuery:
    id: str
    query: str
    positive: str  # the candidate id of the function the docstring documents
    candidates: list[str]  # candidate ids (positive included), in a hashed order


def code_reranking() -> tuple[list[RerankQuery], dict[str, str]]:
    """(queries, corpus: candidate id -> code). Whole modules (of >= MIN_MODULE_FUNCTIONS functions)
    in a hashed order until RERANK_MAX_QUERIES queries, so the corpus stays about as small."""
    by_module: dict[str, list[CodePair]] = defaultdict(list)
    for pair in stdlib_code_pairs("test"):
        by_module[pair.module].append(pair)
    modules = sorted((m for m, pairs in by_module.items() if len(pairs) >= MIN_MODULE_FUNCTIONS),
                     key=lambda m: _rank("module", m))
    queries: list[RerankQuery] = []
    for module in modules:
        if len(queries) >= RERANK_MAX_QUERIES:
            break
        pairs = by_module[module]
        for pair in pairs[: RERANK_MAX_QUERIES - len(queries)]:
            siblings = sorted((p for p in pairs if p.id != pair.id), key=lambda p: _rank("negative", pair.id, p.id))
            chosen = [pair, *siblings[: RERANK_CANDIDATES - 1]]
            ordered = sorted(chosen, key=lambda p: _rank("order", pair.id, p.id))
            queries.append(RerankQuery(f"q:{pair.id}", pair.query, f"d:{pair.id}", [f"d:{p.id}" for p in ordered]))
    queries.sort(key=lambda q: q.id)
    code = {f"d:{p.id}": p.code for p in stdlib_code_pairs("test")}
    corpus = {cid: code[cid] for q in queries for cid in q.candidates}
    return queries, dict(sorted(corpus.items()))
