"""Train/test contamination: which training texts also occur in an evaluation task's data.

KaLM's fine-tuning mix includes many MTEB *training* splits, and some of those datasets share
texts with the evaluation splits (the same query or passage under another split, a corpus that
is both the retrieval pool and a training positive...). The data card reports, per evaluation
task, the training texts found in that task's evaluation data, so a score can be read with that
in mind. Two checks:

- exact: equal after `normalise` (hash lookups, linear in the data; always run);
- near-duplicate: cosine similarity >= a threshold between character 4-gram TF-IDF vectors,
  found with an exact candidate index (prefix filtering, see `_near_duplicates`) instead of
  comparing every pair. For inputs too large for that index (more than MAX_NEAR_CHARS of text,
  or more than `max_near_checks` postings to compare), MinHash + LSH (`datasketch`) over the same
  character 4-grams finds candidates in one streaming pass and each candidate is verified by its
  exact Jaccard similarity; the report names the method that ran, its parameters and the expected
  recall at the threshold (see `_minhash_near_duplicates`).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from harness.errors import HarnessError

EXAMPLES = 5  # examples per check in the report
EXAMPLE_CHARS = 200  # longer example texts are cut (the data card is read by people)
NGRAM = 4
HASH_FEATURES = 2**22  # hashed n-gram space: collisions are negligible at this size
TRAIN_BLOCK = 2048  # training rows per sparse product block (bounds peak memory)
PAIR_BLOCK = 50_000  # candidate pairs scored per block
SIM_EPS = 1e-6  # float32 rounding must not drop a pair exactly at the threshold
MAX_NEAR_CHARS = 50_000_000  # beyond this much text (training + one task), MinHash + LSH is used instead
MINHASH_PERM = 128  # MinHash permutations: the Jaccard estimate's standard error is ~ 1/sqrt(128) = 0.09
MINHASH_SEED = 1
MINHASH_TARGET_RECALL = 0.99  # LSH banding chosen so a pair exactly at the threshold is found this often
MINHASH_METHOD = (
    f"Jaccard similarity of the sets of character {NGRAM}-grams of the normalised texts (a text shorter than "
    f"{NGRAM} characters is one gram); candidates from datasketch MinHashLSH over the task's eval texts "
    f"({MINHASH_PERM} permutations, seed {MINHASH_SEED}; bands x rows: the most selective banding with "
    f"recall >= {MINHASH_TARGET_RECALL} at the threshold), "
    "then every candidate pair verified with its exact Jaccard similarity (no false positives); a pair at "
    "similarity s becomes a candidate with probability 1 - (1 - s^rows)^bands (the expected recall)"
)

NORMALISATION = (
    "Unicode NFKC, then str.casefold(), then every run of Unicode whitespace -> one space, then "
    "characters of Unicode category P* (punctuation) and whitespace stripped from both ends; "
    "texts empty after this are ignored"
)
NEAR_METHOD = (
    f"cosine similarity of character {NGRAM}-gram TF-IDF vectors of the normalised texts "
    f"(scikit-learn HashingVectorizer(analyzer='char_wb', ngram_range=({NGRAM}, {NGRAM}), "
    f"n_features=2**{int(math.log2(HASH_FEATURES))}) + TfidfTransformer(sublinear_tf=True), idf fitted on "
    "the task's eval texts); candidate pairs from exact "
    "prefix filtering (Bayardo et al. 2007: no pair at or above the threshold is missed), then scored exactly; "
    "only training texts that are not exact matches are compared"
)

_TEXT_COLUMN_FALLBACK = ("text", "sentences", "sentence1", "sentence2")


def normalise(text: str) -> str:
    """The form texts are compared in: see NORMALISATION.

    NFKC folds compatibility characters (full-width letters, ligatures, non-breaking spaces),
    casefold is the aggressive, Unicode-aware lower-casing, and edge punctuation covers the
    usual "same sentence, different full stop/quotes" variants. Inner punctuation is kept, so
    code and numbers are not merged ("f(a, b)" stays different from "f(ab)").
    """
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(folded)
    while start < end and _is_edge_noise(folded[start]):
        start += 1
    while end > start and _is_edge_noise(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _is_edge_noise(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


# --- evaluation texts of an mteb task ----------------------------------------------------------


def task_texts(task: Any) -> list[str]:
    """Every text of an mteb task's evaluation splits (all its selected subsets), in dataset order.

    Read from the loaded `task.dataset` (loaded here if needed), in either layout mteb uses:
    `{split: Dataset}` or `{subset: {split: ...}}`. The columns are the task's declared text
    columns (`task._get_content_columns()`, falling back to text/sentences/sentence1/sentence2):
    sentence1 + sentence2 for STS, pair classification and bitext mining (the language columns
    of a parallel bitext task), text for classification, sentences for clustering. Retrieval and
    reranking splits (RetrievalSplitData) give their queries' and corpus documents' `text`:
    titles are not separate texts (a bare title such as "Paris" would match many unrelated
    training texts) and query instructions are task prompts, not data. Lists (clusters,
    conversation turns) are flattened; non-string values are skipped. Only the task's eval
    splits are read: a classification task's train split is not evaluation data.
    """
    if not getattr(task, "data_loaded", False) or task.dataset is None:
        task.load_data()
    columns = _text_columns(task)
    texts: list[str] = []
    for split_data in _eval_split_data(task):
        if _is_retrieval_split(split_data):
            for side in ("queries", "corpus"):
                texts.extend(_column_texts(split_data[side], ("text",)))
        else:
            texts.extend(_column_texts(split_data, columns))
    return texts


def _text_columns(task: Any) -> tuple[str, ...]:
    declared = getattr(task, "_get_content_columns", None)
    columns = declared() if callable(declared) else {}
    text_columns = tuple(column for column, modality in columns.items() if modality == "text")
    return text_columns or _TEXT_COLUMN_FALLBACK


def _eval_split_data(task: Any) -> Iterator[Any]:
    """The data of each (subset, eval split) of the task, subsets in the task's own order."""
    dataset = task.dataset
    splits = list(task.metadata.eval_splits)
    first = next(iter(dataset.values()), None)
    if _is_split_data(first):  # {split: data}: monolingual, or parallel bitext mining
        yield from (dataset[split] for split in splits if split in dataset)
        return
    selected = getattr(task, "hf_subsets", None) or list(dataset)
    for subset in selected:
        by_split = dataset.get(subset) if hasattr(dataset, "get") else None
        if by_split is None:
            continue
        yield from (by_split[split] for split in splits if split in by_split)


def _is_split_data(value: Any) -> bool:
    from datasets import Dataset

    return isinstance(value, Dataset) or _is_retrieval_split(value)


def _is_retrieval_split(value: Any) -> bool:
    # RetrievalSplitData is a TypedDict, i.e. a plain dict at run time.
    return isinstance(value, Mapping) and "corpus" in value and "queries" in value


def _column_texts(data: Any, columns: Sequence[str]) -> Iterator[str]:
    names = getattr(data, "column_names", None) or []
    for column in columns:
        if column in names:
            yield from _strings(data[column])


def _strings(values: Iterable[Any]) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):  # a conversation turn
            content = value.get("content")
            if isinstance(content, str):
                yield content
        elif isinstance(value, Iterable):
            yield from _strings(value)


# --- the report --------------------------------------------------------------------------------


def contamination_report(
    train_texts: Iterable[str],
    tasks: Mapping[str, Any],
    *,
    near_duplicates: bool = True,
    threshold: float = 0.9,
    max_near_checks: int = 200_000,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Per evaluation task, the training texts that also occur in its evaluation data.

    `train_texts`: every query, positive and negative of the training rows (repeats allowed).
    `tasks`: task name -> mteb task (read with `task_texts`) or a ready list of its texts.
    Counts, per task (all JSON-serialisable, examples sorted, so the output is deterministic):
    - exact.distinct: distinct normalised texts in both; exact.train_texts / exact.eval_texts:
      how many training / eval texts (with repeats) are among them;
    - near_duplicates.train_texts: distinct normalised training texts, not exact matches, whose
      nearest eval text has cosine >= `threshold`; .eval_texts: distinct eval texts that close
      to at least one of them; examples carry the similarity;
    - eval_texts_touched / share_eval_touched: distinct eval texts hit by either check, and
      their share of the task's distinct eval texts.
    Near-duplicates are skipped when `near_duplicates` is False. When the TF-IDF candidate index
    would do more than `max_near_checks` comparisons or read more than MAX_NEAR_CHARS (see
    `_near_duplicates`), MinHash + LSH on Jaccard similarity runs instead; each task's
    near_duplicates.method says which ran (with the MinHash parameters and expected recall at the
    threshold). Exact overlap is always reported. `train_texts` may be any iterable (read once).
    """
    if not 0.0 < threshold <= 1.0:
        raise HarnessError(f"contamination: threshold must be in (0, 1], got {threshold!r}")
    train_by_norm, train_counts, n_train = _normalised_index(train_texts)
    train_side = _TrainSide(list(train_by_norm))
    report_tasks: dict[str, Any] = {}
    names = sorted(tasks)
    if show_progress:
        from tqdm.auto import tqdm

        names = tqdm(names, desc="contamination", unit="task")
    for name in names:
        task = tasks[name]
        eval_texts = list(task) if _is_text_list(task) else task_texts(task)
        report_tasks[name] = _task_report(
            eval_texts, train_by_norm, train_counts, train_side,
            near_duplicates=near_duplicates, threshold=threshold, max_near_checks=max_near_checks,
        )
    return {
        "normalisation": NORMALISATION,
        "near_duplicate_method": NEAR_METHOD,
        "near_duplicate_method_at_scale": MINHASH_METHOD,
        "threshold": threshold,
        "train_texts": n_train,
        "train_texts_distinct": len(train_by_norm),
        "tasks": report_tasks,
    }


def _is_text_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(v, str) for v in value)


def _normalised_index(texts: Iterable[str]) -> tuple[dict[str, str], dict[str, int], int]:
    """Normalised text -> its smallest original spelling (so the input order never shows in the
    report), and -> how often it occurs; plus the number of texts read (streamed once). Texts
    empty once normalised are dropped."""
    spelling: dict[str, str] = {}
    counts: dict[str, int] = {}
    n = 0
    for text in texts:
        n += 1
        key = normalise(text)
        if key:
            known = spelling.get(key)
            if known is None or text < known:
                spelling[key] = text
            counts[key] = counts.get(key, 0) + 1
    return spelling, counts, n


def _task_report(
    eval_texts: list[str],
    train_by_norm: dict[str, str],
    train_counts: dict[str, int],
    train_side: _TrainSide,
    *,
    near_duplicates: bool,
    threshold: float,
    max_near_checks: int,
) -> dict[str, Any]:
    eval_by_norm, eval_counts, _ = _normalised_index(eval_texts)
    exact = sorted(key for key in eval_by_norm if key in train_by_norm)
    exact_set = set(exact)
    report: dict[str, Any] = {
        "eval_texts": len(eval_texts),
        "eval_texts_distinct": len(eval_by_norm),
        "exact": {
            "distinct": len(exact),
            "train_texts": sum(train_counts[key] for key in exact),
            "eval_texts": sum(eval_counts[key] for key in exact),
            "examples": [_cut(eval_by_norm[key]) for key in exact[:EXAMPLES]],
        },
    }
    touched = set(exact)
    if not near_duplicates:
        report["near_duplicates"] = {"skipped": "near-duplicate check turned off"}
    else:
        near = _near_duplicates(train_side, exact_set, sorted(eval_by_norm), threshold=threshold,
                                max_checks=max_near_checks)
        if "too_large" in near:
            near = _minhash_near_duplicates(train_side.texts, exact_set, sorted(eval_by_norm),
                                            threshold=threshold, reason=near["too_large"])
        if "skipped" in near:
            report["near_duplicates"] = near
        else:
            touched.update(near["eval_hit"])
            pairs = sorted(near["pairs"], key=lambda p: (-p[2], p[0], p[1]))
            report["near_duplicates"] = {
                **near.get("method", {"method": "tfidf-cosine-prefix-filter"}),
                "train_texts": len(near["pairs"]),
                "eval_texts": len(near["eval_hit"]),
                "candidate_pairs": near["candidate_pairs"],
                "checks": near["checks"],
                "examples": [
                    {"train": _cut(train_by_norm[t]), "eval": _cut(eval_by_norm[e]), "similarity": round(s, 4)}
                    for t, e, s in pairs[:EXAMPLES]
                ],
            }
    report["eval_texts_touched"] = len(touched)
    report["share_eval_touched"] = round(len(touched) / len(eval_by_norm), 6) if eval_by_norm else 0.0
    return report


def _cut(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


# --- near-duplicates -----------------------------------------------------------------------------


def _hashing_vectorizer() -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer

    # Hashing rather than a fitted vocabulary: the training side is vectorised once per report and
    # stays comparable with every task's eval side.
    return HashingVectorizer(analyzer="char_wb", ngram_range=(NGRAM, NGRAM), n_features=HASH_FEATURES,
                             alternate_sign=False, norm=None, lowercase=False, dtype=np.float32)


class _TrainSide:
    """The distinct normalised training texts and, built on first use, their n-gram counts."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.chars = sum(len(text) for text in texts)
        self._counts: Any = None

    def counts(self) -> Any:
        if self._counts is None:
            self._counts = _hashing_vectorizer().transform(self.texts).tocsr()
        return self._counts


def _near_duplicates(
    train_side: _TrainSide,
    exact: set[str],
    evals: list[str],
    *,
    threshold: float,
    max_checks: int,
) -> dict[str, Any]:
    """Training texts (not in `exact`) whose most similar eval text has cosine >= threshold.

    `evals` are the task's distinct normalised texts, sorted. Comparing every pair is
    O(len(train) x len(eval)). Prefix filtering (Bayardo, Ma & Srikant, "Scaling up all pairs
    similarity search", WWW 2007) avoids that without missing a pair. Order n-grams globally, most
    common (lowest idf) first, and cut each unit-length, non-negative vector into a "suffix" (its
    most common n-grams, squared mass < threshold²) and a "prefix" (the rest). If two vectors share
    no n-gram in both prefixes, every n-gram they share lies in the suffix of the one whose suffix
    reaches further in the global order, so their cosine is at most that suffix's norm, below the
    threshold. Candidates are therefore the pairs sharing a prefix n-gram (one sparse product of the
    0/1 prefix matrices), and only they are scored exactly. The work of that product, the sum over
    n-grams of (training prefixes with it) x (eval prefixes with it), is known before doing it:
    it is the `checks` compared with `max_checks`. Texts beyond MAX_NEAR_CHARS are not vectorised.
    """
    from sklearn.feature_extraction.text import TfidfTransformer

    rows = np.array([i for i, text in enumerate(train_side.texts) if text not in exact], dtype=np.int64)
    chars = train_side.chars + sum(len(text) for text in evals)
    if chars > MAX_NEAR_CHARS:
        return {"too_large": f"{chars} characters of training + eval text, over {MAX_NEAR_CHARS}"}
    if len(rows) == 0 or not evals:
        return {"pairs": [], "eval_hit": set(), "candidate_pairs": 0, "checks": 0}
    train_counts = train_side.counts()[rows]
    eval_counts = _hashing_vectorizer().transform(evals).tocsr()
    # idf from the eval texts alone: then a training text's verdict depends only on it and the
    # task, never on what else is in the training set (n-grams the task lacks get the top idf).
    tfidf = TfidfTransformer(sublinear_tf=True).fit(eval_counts)
    train_vectors = tfidf.transform(train_counts).tocsr()
    eval_vectors = tfidf.transform(eval_counts).tocsr()

    train_prefix = _prefix_matrix(train_vectors, tfidf.idf_, threshold)
    eval_prefix = _prefix_matrix(eval_vectors, tfidf.idf_, threshold)
    train_df = np.bincount(train_prefix.indices, minlength=HASH_FEATURES).astype(np.int64)
    eval_df = np.bincount(eval_prefix.indices, minlength=HASH_FEATURES).astype(np.int64)
    checks = int(train_df @ eval_df)
    if checks > max_checks:
        return {"too_large": (f"the candidate index would compare {checks} (training, eval) n-gram postings, "
                              f"over max_near_checks={max_checks}")}

    best_sim = np.zeros(len(rows), dtype=np.float64)
    best_eval = np.zeros(len(rows), dtype=np.int64)
    eval_hit = np.zeros(len(evals), dtype=bool)
    candidate_pairs = 0
    eval_prefix_t = eval_prefix.T.tocsc()
    for start in range(0, len(rows), TRAIN_BLOCK):
        shared = (train_prefix[start:start + TRAIN_BLOCK] @ eval_prefix_t).tocoo()
        block_rows, block_cols = shared.row.astype(np.int64) + start, shared.col.astype(np.int64)
        candidate_pairs += len(block_rows)
        for lo in range(0, len(block_rows), PAIR_BLOCK):
            r, c = block_rows[lo:lo + PAIR_BLOCK], block_cols[lo:lo + PAIR_BLOCK]
            sims = np.asarray(train_vectors[r].multiply(eval_vectors[c]).sum(axis=1), dtype=np.float64).ravel()
            eval_hit[c[sims >= threshold - SIM_EPS]] = True
            _keep_nearest(r, c, sims, best_sim, best_eval)
    near = np.flatnonzero(best_sim >= threshold - SIM_EPS)
    pairs = [(train_side.texts[rows[i]], evals[best_eval[i]], float(min(best_sim[i], 1.0))) for i in near]
    return {"pairs": pairs, "eval_hit": {evals[j] for j in np.flatnonzero(eval_hit)},
            "candidate_pairs": candidate_pairs, "checks": checks}


def _keep_nearest(rows: np.ndarray, cols: np.ndarray, sims: np.ndarray,
                  best_sim: np.ndarray, best_eval: np.ndarray) -> None:
    """Update each row's best (similarity, eval index); ties go to the lower eval index (sorted text)."""
    order = np.lexsort((cols, -sims, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    first = np.unique(rows, return_index=True)[1]
    rows, cols, sims = rows[first], cols[first], sims[first]
    better = (sims > best_sim[rows]) | ((sims == best_sim[rows]) & (cols < best_eval[rows]))
    best_sim[rows[better]] = sims[better]
    best_eval[rows[better]] = cols[better]


def _prefix_matrix(vectors: Any, idf: np.ndarray, threshold: float) -> Any:
    """0/1 matrix of each row's prefix: all but its most common n-grams of squared mass < threshold²."""
    from scipy import sparse

    counts = np.diff(vectors.indptr)
    row_of = np.repeat(np.arange(vectors.shape[0]), counts)
    # Within a row: most common n-gram (lowest idf) first, ties by column for determinism.
    order = np.lexsort((vectors.indices, idf[vectors.indices], row_of))
    cumulative = np.cumsum(vectors.data[order].astype(np.float64) ** 2)
    row_offset = np.concatenate(([0.0], cumulative))[vectors.indptr[:-1]]
    within_row = cumulative - np.repeat(row_offset, counts)
    # An n-gram stays in the suffix only while the suffix mass is safely below threshold².
    in_prefix = within_row >= (threshold - SIM_EPS) ** 2 - 1e-9
    rows, cols = row_of[order][in_prefix], vectors.indices[order][in_prefix]
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=vectors.shape)


# --- near-duplicates at scale: MinHash + LSH ----------------------------------------------------


def _grams(text: str) -> np.ndarray:
    """The text's distinct character n-grams as sorted 64-bit hashes (vectorised: no Python loop per gram).

    Each gram's code points are combined and mixed (splitmix64's finaliser); a text shorter than
    NGRAM characters is one gram. Distinct grams collide with probability ~2^-64 per pair.
    """
    with np.errstate(over="ignore"):
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        if len(points) < NGRAM:
            points = np.concatenate([points, np.zeros(NGRAM - len(points), dtype=np.uint64)])
        h = np.zeros(len(points) - NGRAM + 1, dtype=np.uint64)
        for k in range(NGRAM):
            h = h * np.uint64(0x100000001B3) + points[k : len(points) - NGRAM + 1 + k]
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return np.unique(h)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two gram sets from `_grams`."""
    shared = len(np.intersect1d(a, b, assume_unique=True))
    return shared / (len(a) + len(b) - shared)


def _minhash(grams: np.ndarray) -> Any:
    from datasketch import MinHash

    sketch = MinHash(num_perm=MINHASH_PERM, seed=MINHASH_SEED, hashfunc=int)  # grams are hashed already
    sketch.update_batch((grams & np.uint64(0xFFFFFFFF)).tolist())
    return sketch


def lsh_bands(threshold: float, num_perm: int = MINHASH_PERM, target: float = MINHASH_TARGET_RECALL) -> tuple[int, int]:
    """(bands, rows): the most selective banding (most rows per band) whose recall at the threshold
    still reaches `target`. datasketch's own choice balances false positives against misses, which
    gives ~0.4 recall at the threshold; here candidates are verified exactly, so misses cost more."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if expected_recall(threshold, bands, rows) >= target:
            return bands, rows
    return num_perm, 1


def expected_recall(similarity: float, bands: int, rows: int) -> float:
    """Probability that LSH with `bands` bands of `rows` rows makes a pair of Jaccard `similarity` a candidate."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def _minhash_near_duplicates(train: Iterable[str], exact: set[str], evals: list[str], *, threshold: float,
                             reason: str) -> dict[str, Any]:
    """Training texts (not in `exact`) with an eval text of exact Jaccard >= threshold, via MinHash + LSH.

    The eval side (one task) is indexed; training texts stream past it one at a time, so memory is
    the eval side's grams and sketches, whatever the size of the training data. Candidates that
    LSH finds are verified exactly, so every reported pair is real; a pair is missed with
    probability 1 - expected_recall(its similarity) (lowest at the threshold, falling fast above it).
    """
    from datasketch import MinHashLSH

    bands, rows = lsh_bands(threshold)
    lsh = MinHashLSH(num_perm=MINHASH_PERM, params=(bands, rows))
    eval_grams = [_grams(text) for text in evals]
    for j, grams in enumerate(eval_grams):
        lsh.insert(j, _minhash(grams))
    pairs: list[tuple[str, str, float]] = []
    eval_hit: set[str] = set()
    candidates = 0
    for text in train:
        if text in exact:
            continue
        grams = _grams(text)
        best: tuple[float, int] | None = None
        for j in sorted(lsh.query(_minhash(grams))):
            candidates += 1
            similarity = jaccard(grams, eval_grams[j])
            if similarity >= threshold - SIM_EPS:
                eval_hit.add(evals[j])
                if best is None or similarity > best[0]:
                    best = (similarity, j)
        if best is not None:
            pairs.append((text, evals[best[1]], float(best[0])))
    method = {
        "method": "minhash-lsh",
        "similarity": f"jaccard of character {NGRAM}-gram sets",
        "reason": reason,
        "num_perm": MINHASH_PERM,
        "bands": bands,
        "rows_per_band": rows,
        "expected_recall_at_threshold": round(expected_recall(threshold, bands, rows), 4),
    }
    return {"pairs": pairs, "eval_hit": eval_hit, "candidate_pairs": candidates, "checks": candidates,
            "method": method}
