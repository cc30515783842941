"""Benchmark: the data path at scale (issue 8). Not a test: numbers for the closing note.

Synthetic FlagEmbedding data from a seeded generator (1 query, 1 positive, 7 negatives, ~40 words
each, several tasks, one file per task), then, each measurement in a fresh process (peak RSS from
os.wait4's rusage of that child):

1. the data stage (`build_data`, one flag-jsonl source, 7 hard negatives) per size: peak RSS, wall
   time, rows/s; beside it `datasets.load_dataset("json")` reading the same files;
2. one training step per rank, 2 gloo processes (torchrun), tiny-qwen2, on the tables of two sizes;
3. the teacher pass (tiny-qwen2 teacher, `data build` of a filtered recipe) on 1 vs 2 processes:
   identical top-k and negatives, and the wall-time ratio;
4. the filtered data stage (`--parts filtered`): the same data stage with `data.filter` (top_k 20,
   mined from ranks [5, 30), depth 32) per size, its peak RSS beside the unfiltered one and the
   ratio of the largest to the smallest size for each. The teacher is a hash embedder (a text's
   32-dim vector from its blake2b digest, `HashTeacher`), so the measurement is the harness's data
   path (plan, store, search, cut, streaming write) rather than a model's encoding time.
   Measured (issue 17, the pass and the cut task by task; AVX512 Xeon, 2 cores shared with other
   jobs, so the times are loose): filtered peak RSS 832 MiB (100k rows, 193 s) / 880 MiB (300k, 370 s)
   / 984 MiB (1M, 2250 s), x1.18 from 100k to 1M, beside the unfiltered stage's 205 / 290 MiB, x1.42
   (before: 1277 / 5927 MiB, x4.64, when the plan held every text of the table and the cut every
   task's ranking). Most of the ~830 MiB is constant: torch, and the search's score block of one task
   (2000 queries x ~16k corpus items, float32) with topk's temporaries.

    python bench/bench_data.py --sizes 100000 300000 1000000 --workdir /tmp/bench-data
    python bench/bench_data.py --parts data filtered --sizes 100000 1000000

The 1M-row file is ~2.4 GB: check `df -h` first; --keep leaves the files, else they are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TASKS = ["msmarco", "nq", "hotpotqa", "fiqa", "nli", "quora", "banking77", "stackexchange"]
WORDS_PER_TEXT = 40


def generate(folder: Path, rows: int, seed: int = 0, task_rows: int | None = None) -> int:
    """Seeded synthetic rows, one JSON-lines file per task; returns bytes written.

    `task_rows`: about that many rows per task (tasks `t0000`...), instead of the 8 fixed tasks."""
    import numpy as np
    from tqdm.auto import tqdm

    if rows > FRESH_ROWS or task_rows is not None:  # FRESH_ROWS rows drawn once, then copies made distinct
        return _replicate(folder, rows, seed, task_rows)
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=int(n))) for n in rng.integers(2, 10, size=20_000)]
    folder.mkdir(parents=True, exist_ok=True)
    tasks_list = TASKS if task_rows is None else [f"t{i:04d}" for i in range(max(1, rows // task_rows))]
    handles = {t: (folder / f"{t}.jsonl").open("w", encoding="utf-8") for t in tasks_list}
    chunk = 10_000
    with tqdm(total=rows, desc=f"generate {rows}", unit="row") as bar:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            words = rng.integers(0, len(vocab), size=(n, 9, WORDS_PER_TEXT))
            lengths = rng.integers(WORDS_PER_TEXT // 2, WORDS_PER_TEXT * 3 // 2 + 1, size=(n, 9))
            tasks = rng.integers(0, len(tasks_list), size=n)
            for i in range(n):
                texts = [" ".join(vocab[w] for w in words[i, j, : lengths[i, j]]) for j in range(9)]
                record = {"query": texts[0], "pos": [texts[1]], "neg": texts[2:]}
                handles[tasks_list[tasks[i]]].write(json.dumps(record) + "\n")
            bar.update(n)
    for handle in handles.values():
        handle.close()
    return sum(f.stat().st_size for f in folder.iterdir())


FRESH_ROWS = 100_000  # rows drawn word by word (~1k rows/s on a loaded CPU); larger sizes copy them


def _replicate(folder: Path, rows: int, seed: int, task_rows: int | None) -> int:
    """`rows` rows: FRESH_ROWS drawn rows, then copy k of each with ` ~k` appended to every text (so no two
    rows or texts are equal), spread over the tasks as `generate` spreads them; ~20x faster than drawing."""
    import numpy as np
    from tqdm.auto import tqdm

    base = folder.parent / ".fresh-rows"  # drawn once per workdir (seed 0), shared by every size
    if not base.is_dir():
        generate(base, FRESH_ROWS)
    records = [line for f in sorted(base.glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]
    tasks_list = TASKS if task_rows is None else [f"t{i:04d}" for i in range(max(1, rows // task_rows))]
    folder.mkdir(parents=True, exist_ok=True)
    handles = {t: (folder / f"{t}.jsonl").open("w", encoding="utf-8") for t in tasks_list}
    rng = np.random.default_rng(seed + 1)
    with tqdm(total=rows, desc=f"replicate {rows}", unit="row") as bar:
        for start in range(0, rows, len(records)):
            copy, n = start // len(records), min(len(records), rows - start)
            tasks = rng.integers(0, len(tasks_list), size=n)
            for i in range(n):
                record = json.loads(records[i])
                if copy:
                    record = {"query": f"{record['query']} ~{copy}", "pos": [f"{t} ~{copy}" for t in record["pos"]],
                              "neg": [f"{t} ~{copy}" for t in record["neg"]]}
                handles[tasks_list[tasks[i]]].write(json.dumps(record) + "\n")
            bar.update(n)
    for handle in handles.values():
        handle.close()
    return sum(f.stat().st_size for f in folder.iterdir())


def _variant(source: Path, **extra: object) -> dict:
    return {"model": {"backbone": "tiny-qwen2", "query_max_length": 32, "passage_max_length": 64},
            "data": {"hard_negatives": 7, "sources": {"synthetic": {"kind": "flag-jsonl", "path": str(source)}},
                     **extra},
            "train": {"batch_size": 8, "steps": 1, "lr": 1e-4}}


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not getrusage: Linux carries ru_maxrss across exec, so a
    child would report at least its parent's size at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[float, dict, int]:
    """Run a child process; return (wall seconds, the JSON it printed last, exit code)."""
    started = time.perf_counter()
    proc = subprocess.run(args, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return wall, (json.loads(lines[-1]) if lines else {}), proc.returncode


# ----------------------------------------------------------------------------- children


def child_data(source: str, cache: str) -> None:
    os.environ["HARNESS_CACHE"] = cache
    from harness.config import VariantConfig
    from harness.train.stage import build_data

    card = build_data(VariantConfig.model_validate(_variant(Path(source))), show_progress=False)
    print(json.dumps({"rows": card["rows"], "peak_rss_mib": peak_rss_mib()}))


class HashTeacher:
    """A stand-in teacher: each text's unit vector from its blake2b digest (32 dims), ~1 µs a text."""

    DIM = 32

    def __call__(self, texts: list[str], side: str) -> object:
        import hashlib

        import numpy as np

        raw = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=self.DIM).digest() for t in texts)
        vectors = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), self.DIM).astype(np.float32) - 127.5
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# top_k null keeps every row (the hash teacher ranks positives at random), so every row is written;
# 10 negatives per row: the row's 7, then 3 mined from ranks [5, 30)
FILTER = {"teacher": "minilm", "top_k": None, "window": [5, 30], "depth": 32, "max_length": 64, "bf16": False}
FILTER_TASK_ROWS = 2000


def child_filtered(source: str, cache: str) -> None:
    """The filtered data stage with the hash teacher (its mix built in this process too)."""
    os.environ["HARNESS_CACHE"] = cache
    import harness.data.mix as mix
    from harness.config import VariantConfig
    from harness.train.stage import build_data

    mix.teacher_embed = lambda config: (HashTeacher(), "bench-hash-teacher")  # type: ignore[assignment]
    config = VariantConfig.model_validate(_variant(Path(source), filter=FILTER, hard_negatives=10))
    card = build_data(config, show_progress=False)
    print(json.dumps({"rows": card["rows"], "kept": card["rows_after_filter"], "peak_rss_mib": peak_rss_mib()}))


def child_load_dataset(source: str, cache: str) -> None:
    import datasets

    data = datasets.load_dataset("json", data_files=sorted(str(p) for p in Path(source).glob("*.jsonl")),
                                 split="train", cache_dir=cache)
    print(json.dumps({"rows": len(data), "peak_rss_mib": peak_rss_mib()}))


def child_train(source: str, cache: str, out: str) -> None:
    """One rank of a 2-process gloo group: open the table, run one training step, record peak RSS."""
    os.environ["HARNESS_CACHE"] = cache
    from harness.config import VariantConfig
    from harness.data.table import open_table
    from harness.stages import data_stage
    from harness.train.distributed import init_from_env
    from harness.train.loop import train

    world = init_from_env()
    config = VariantConfig.model_validate(_variant(Path(source)))
    table = open_table(data_stage(config).dir)
    before = peak_rss_mib()
    train(config, table, Path(os.devnull), world=world, show_progress=False, stop_after=1)
    peak = peak_rss_mib()
    Path(out).with_suffix(f".rank{world.rank}.json").write_text(json.dumps(
        {"rank": world.rank, "rows": len(table), "rss_before_train_mib": before, "peak_rss_mib": peak}))


# ----------------------------------------------------------------------------- parts


def bench_data_stage(work: Path, sizes: list[int], keep: bool) -> list[dict]:
    results = []
    for size in sizes:
        source = work / f"rows-{size}"
        if not source.is_dir():
            nbytes = generate(source, size)
        else:
            nbytes = sum(f.stat().st_size for f in source.iterdir())
        cache = work / f"cache-{size}"
        shutil.rmtree(cache, ignore_errors=True)
        wall, info, code = run_child([sys.executable, __file__, "--child-data", str(source), str(cache)])
        assert code == 0 and info["rows"] == size, f"data stage failed for {size}"
        rss = info["peak_rss_mib"]
        hf_cache = work / f"hf-{size}"
        shutil.rmtree(hf_cache, ignore_errors=True)
        hf_wall, info, code = run_child([sys.executable, __file__, "--child-load-dataset", str(source), str(hf_cache)],
                                        env={"HF_DATASETS_OFFLINE": "1"})
        assert code == 0 and info["rows"] == size, f"load_dataset failed for {size}"
        hf_rss = info["peak_rss_mib"]
        shutil.rmtree(hf_cache, ignore_errors=True)
        row = {"rows": size, "file_mb": round(nbytes / 2**20), "data_stage_s": round(wall, 1),
               "data_stage_peak_rss_mib": round(rss), "rows_per_s": round(size / wall),
               "load_dataset_json_s": round(hf_wall, 1), "load_dataset_peak_rss_mib": round(hf_rss),
               "load_dataset_rows_per_s": round(size / hf_wall)}
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def bench_filtered(work: Path, sizes: list[int], unfiltered: list[dict]) -> dict:
    """Peak RSS of the filtered data stage per size, beside the unfiltered stage's (same files)."""
    plain = {r["rows"]: r["data_stage_peak_rss_mib"] for r in unfiltered}
    rows = []
    for size in sizes:
        # tasks of ~FILTER_TASK_ROWS rows (KaLM's data is hundreds of tasks): the exact search is
        # per task, so its cost grows with the rows, not with their square
        source = work / f"filter-rows-{size}"
        if not source.is_dir():
            generate(source, size, seed=2, task_rows=FILTER_TASK_ROWS)
        cache = work / f"filtered-cache-{size}"
        shutil.rmtree(cache, ignore_errors=True)
        wall, info, code = run_child([sys.executable, __file__, "--child-filtered", str(source), str(cache)])
        assert code == 0 and info["rows"] == size, f"filtered data stage failed for {size}"
        shutil.rmtree(cache, ignore_errors=True)
        row = {"rows": size, "kept": info["kept"], "filtered_s": round(wall, 1),
               "filtered_peak_rss_mib": round(info["peak_rss_mib"]), "unfiltered_peak_rss_mib": plain.get(size)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    small, large = rows[0], rows[-1]
    ratios = {"sizes": [small["rows"], large["rows"]],
              "filtered_rss_ratio": round(large["filtered_peak_rss_mib"] / small["filtered_peak_rss_mib"], 2)}
    if small["unfiltered_peak_rss_mib"] and large["unfiltered_peak_rss_mib"]:
        ratios["unfiltered_rss_ratio"] = round(large["unfiltered_peak_rss_mib"] / small["unfiltered_peak_rss_mib"], 2)
    print(f"peak RSS {large['rows']} vs {small['rows']} rows: filtered x{ratios['filtered_rss_ratio']} "
          f"(goal <= 1.5), unfiltered x{ratios.get('unfiltered_rss_ratio', '?')}", flush=True)
    return {"runs": rows, **ratios}


def bench_train_step(work: Path, sizes: list[int]) -> list[dict]:
    out = []
    for size in sizes:
        source, cache = work / f"rows-{size}", work / f"cache-{size}"
        target = work / f"train-{size}"
        prep = [sys.executable, "-c", "from harness.backbones import resolve_path; resolve_path('tiny-qwen2')"]
        assert run_child(prep, env={"HARNESS_CACHE": str(cache)})[2] == 0  # built once, not by two racing ranks
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
               "--child-train", str(source), str(cache), str(target)]
        wall, _, code = run_child(cmd)
        assert code == 0, f"training step failed for {size}"
        ranks = [json.loads(target.with_suffix(f".rank{r}.json").read_text()) for r in range(2)]
        row = {"rows": size, "step_wall_s": round(wall, 1),
               **{f"rank{r['rank']}_peak_rss_mib": round(r["peak_rss_mib"]) for r in ranks},
               **{f"rank{r['rank']}_rss_before_step_mib": round(r["rss_before_train_mib"]) for r in ranks}}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def bench_teacher(work: Path, rows: int) -> dict:
    """`data build` of a filtered recipe (tiny-qwen2 teacher) on 1 and on 2 processes."""
    import yaml

    source = work / f"teacher-rows-{rows}"
    if not source.is_dir():
        generate(source, rows, seed=1)
    recipe = work / "teacher.yaml"
    base = _variant(source, filter={"teacher": "tiny-qwen2", "top_k": 20, "window": [5, 30], "depth": 32,
                                    "max_length": 64})
    recipe.write_text(yaml.safe_dump({"description": "teacher pass bench", "mode": "oneway", "base": base,
                                      "ablate": {}}))
    times, stages = {}, {}
    for procs in (1, 2):
        cache = work / f"teacher-cache-{procs}"
        shutil.rmtree(cache, ignore_errors=True)
        # the unfiltered mix first (rank 0's job either way), so the timing is the teacher pass + filter
        script = ("import sys; sys.path.insert(0, sys.argv[1]);"
                  "from harness.recipe import load_recipe; from harness.data.mix import ensure_mix;"
                  "ensure_mix(load_recipe(sys.argv[2]).variants[0].config.data, show_progress=False);"
                  "from harness.backbones import resolve_path; resolve_path('tiny-qwen2')")
        prep = [sys.executable, "-c", script, str(REPO), str(recipe)]
        assert run_child(prep, env={"HARNESS_CACHE": str(cache)})[2] == 0
        cmd = [sys.executable, "-m", "harness", "data", "build", str(recipe), "--no-progress"]
        if procs == 2:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   "-m", "harness", "data", "build", str(recipe), "--no-progress"]
        wall, _, code = run_child(cmd, env={"HARNESS_CACHE": str(cache), "PYTHONPATH": str(REPO)})
        assert code == 0, f"data build on {procs} process(es) failed"
        times[procs] = wall
        stages[procs] = next((cache / "data").iterdir())
    from harness.data.filtering import load_ranking
    from harness.data.table import open_table

    rank = {p: load_ranking(next((work / f"teacher-cache-{p}" / "rankings").iterdir())) for p in (1, 2)}
    identical_topk = all(
        (rank[1].tasks[t].top_indices == rank[2].tasks[t].top_indices).all()
        and (rank[1].tasks[t].top_scores == rank[2].tasks[t].top_scores).all() for t in rank[1].tasks)
    identical_rows = list(open_table(stages[1])) == list(open_table(stages[2]))
    texts = sum(len(t.corpus) for t in rank[1].tasks.values()) + sum(len(set(t.query_of_row.tolist()))
                                                                   for t in rank[1].tasks.values())
    row = {"rows": rows, "texts_ranked_approx": texts, "wall_1proc_s": round(times[1], 1),
           "wall_2proc_s": round(times[2], 1), "ratio_2_over_1": round(times[2] / times[1], 3),
           "identical_topk": bool(identical_topk), "identical_table": identical_rows,
           "shards_used": rank[2].stats.get("shards")}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--train-sizes", type=int, nargs="*", help="sizes for the training-step part (default: "
                                                                   "smallest and largest of --sizes)")
    parser.add_argument("--teacher-rows", type=int, default=3000, help="rows for the 1 vs 2 process teacher pass")
    parser.add_argument("--workdir", default="/tmp/bench-data")
    parser.add_argument("--parts", nargs="+", default=["data", "train", "teacher", "filtered"],
                        choices=["data", "train", "teacher", "filtered"])
    parser.add_argument("--keep", action="store_true", help="keep generated files and caches")
    parser.add_argument("--child-data", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-load-dataset", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-filtered", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-train", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_data:
        return child_data(*args.child_data)
    if args.child_filtered:
        return child_filtered(*args.child_filtered)
    if args.child_load_dataset:
        return child_load_dataset(*args.child_load_dataset)
    if args.child_train:
        return child_train(*args.child_train)

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    from harness.devices import cpu_model

    print(f"cpu: {cpu_model()}, capability: {torch.backends.cpu.get_cpu_capability()}, cores: {os.cpu_count()}",
          flush=True)
    report: dict = {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        if "data" in args.parts:
            report["data_stage"] = bench_data_stage(work, args.sizes, args.keep)
        if "train" in args.parts:
            sizes = args.train_sizes or sorted({min(args.sizes), max(args.sizes)})
            report["train_step"] = bench_train_step(work, sizes)
        if "teacher" in args.parts:
            report["teacher"] = bench_teacher(work, args.teacher_rows)
        if "filtered" in args.parts:
            report["filtered"] = bench_filtered(work, args.sizes, report.get("data_stage", []))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
