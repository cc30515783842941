"""Benchmark of ranking-consistency filtering: teacher-pass throughput, search backend, ablation cost.

    HF_HUB_OFFLINE=1 python bench/bench_filtering.py [--faiss-path /tmp/faiss_throwaway]

1. Teacher pass (MiniLM, real stdlib docstring -> function rows) at three corpus sizes: rows/s,
   split into encoding and search time.
2. Exact top-k search, blocked torch matmul + topk vs FAISS IndexFlatIP (KaLM's choice), on random
   unit vectors. FAISS is not a dependency: it is used only if importable (e.g. after
   `pip install --target /tmp/faiss_throwaway faiss-cpu` and `--faiss-path /tmp/faiss_throwaway`).
3. Cost of a K=4 threshold ablation (one cached teacher pass + 4 cuts) relative to a single
   threshold, in one process; the target is <= 1.1x.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.data.filtering import apply_filter, cached_teacher_pass, teacher_pass  # noqa: E402
from harness.data.rows import TrainRow  # noqa: E402
from harness.data.teacher import exact_top_k  # noqa: E402


def stdlib_rows(limit: int) -> list[TrainRow]:
    """Docstring (first paragraph) -> function source without the docstring; one task (offline suite)."""
    from harness.data.offline.stdlib_code import all_stdlib_code_pairs

    return [TrainRow(p.query, [p.code], [], task="stdlib-code", source="stdlib")
            for p in all_stdlib_code_pairs()[:limit]]


def minilm_embed():
    from harness.config import ModelConfig
    from harness.model import Embedder

    embedder = Embedder.from_config(ModelConfig())

    def embed(texts: list[str], side: str) -> np.ndarray:
        return embedder.encode(texts, max_length=64 if side == "query" else 128, batch_size=64)

    embed(["warm up"], "query")
    return embed


def bench_teacher_pass(embed, sizes: list[int]) -> None:
    print("\n## 1. teacher pass throughput (MiniLM, stdlib docstring -> function rows, depth 128)")
    print(f"{'rows':>6} {'corpus':>7} {'seconds':>8} {'rows/s':>7} {'encode s':>9} {'search s':>9}")
    for n in sizes:
        rows = stdlib_rows(n)
        start = time.perf_counter()
        ranking = teacher_pass(rows, embed, depth=128, show_progress=False)
        seconds = time.perf_counter() - start
        corpus = sum(len(t.corpus) for t in ranking.tasks.values())
        print(f"{len(rows):>6} {corpus:>7} {seconds:>8.2f} {len(rows) / seconds:>7.1f} "
              f"{ranking.stats['encode_seconds']:>9.2f} {ranking.stats['search_seconds']:>9.3f}")


def _best_of(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_search(faiss_path: str | None) -> None:
    import torch

    print(f"\n## 2. exact top-128 inner-product search, {torch.get_num_threads()} threads (best of 2)")
    if faiss_path:
        sys.path.insert(0, faiss_path)
    try:
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())
        faiss_note = f"faiss {faiss.__version__}"
    except ImportError:
        faiss = None
        faiss_note = "faiss not importable: torch only"
    print(faiss_note)
    print(f"{'queries':>7} {'corpus':>7} {'dim':>4} {'torch s':>8} {'faiss s':>8} {'same top-10':>11}")
    rng = np.random.default_rng(0)
    for n_q, n_c, dim in [(2000, 10_000, 384), (2000, 50_000, 384), (2000, 50_000, 896)]:
        q = rng.normal(size=(n_q, dim)).astype(np.float32)
        c = rng.normal(size=(n_c, dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        torch_s = _best_of(lambda: exact_top_k(q, c, 128))
        faiss_s, agree = float("nan"), float("nan")
        if faiss is not None:
            def run_faiss():
                index = faiss.IndexFlatIP(dim)
                index.add(c)
                return index.search(q, 128)
            faiss_s = _best_of(run_faiss)
            _, f_idx = run_faiss()
            _, t_idx = exact_top_k(q, c, 128)
            agree = float(np.mean(f_idx[:, :10] == t_idx[:, :10]))
        print(f"{n_q:>7} {n_c:>7} {dim:>4} {torch_s:>8.3f} {faiss_s:>8.3f} {agree:>11.4f}")


def bench_ablation(embed, n_rows: int) -> None:
    print(f"\n## 3. threshold ablation cost ({n_rows} rows, one process, fresh cache each)")
    rows = stdlib_rows(n_rows)
    calls = {"n": 0}

    def counted(texts: list[str], side: str) -> np.ndarray:
        calls["n"] += len(texts)
        return embed(texts, side)

    def arm(thresholds: list[int | None]) -> tuple[float, list[float]]:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            cuts = []
            for top_k in thresholds:
                ranking = cached_teacher_pass(rows, counted, "minilm", Path(cache), depth=128, show_progress=False)
                cut_start = time.perf_counter()
                apply_filter(rows, ranking, top_k=top_k, negatives=7, window=(50, 100))
                cuts.append(time.perf_counter() - cut_start)
            return time.perf_counter() - start, cuts

    one, one_cuts = arm([50])
    texts_one = calls["n"]
    four, four_cuts = arm([None, 10, 20, 50])
    texts_four = calls["n"] - texts_one
    print(f"one threshold : {one:7.2f} s (cut {one_cuts[0] * 1000:.1f} ms), texts encoded {texts_one}")
    print(f"four thresholds: {four:7.2f} s (cuts {', '.join(f'{c * 1000:.1f}' for c in four_cuts)} ms), "
          f"texts encoded {texts_four}")
    print(f"ratio four/one: {four / one:.3f}x (target <= 1.1x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 600, 1500])
    parser.add_argument("--ablation-rows", type=int, default=600)
    parser.add_argument("--faiss-path", default=None, help="extra sys.path entry holding a throwaway faiss")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, stdlib rows available: {len(stdlib_rows(10**6))}")
    embed = minilm_embed()
    bench_teacher_pass(embed, args.sizes)
    bench_search(args.faiss_path)
    bench_ablation(embed, args.ablation_rows)


if __name__ == "__main__":
    main()
