"""Test-wide settings: the Hub is off (a missing model fails at once), caches are private."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The session's cache: $PYTEST_HARNESS_CACHE (kept, so a second run starts warm), else a fresh
# private temp folder removed when the session ends. Never a fixed path: two concurrent sessions
# (two checkouts, two users) must not share or clean each other's caches, and never the user's
# own $HARNESS_CACHE. Processes the tests spawn import this file again: they keep the caches their
# parent gave them (a test's fresh_cache included).
_SESSION_ENV = "HARNESS_TEST_SESSION"
_CREATED_BY: int | None = None
if not os.environ.get(_SESSION_ENV):  # the pytest process itself
    if not os.environ.get("PYTEST_HARNESS_CACHE"):
        os.environ["PYTEST_HARNESS_CACHE"] = tempfile.mkdtemp(prefix="harness-tests-")
        _CREATED_BY = os.getpid()
    os.environ[_SESSION_ENV] = str(os.getpid())
    os.environ["HARNESS_CACHE"] = os.environ["PYTEST_HARNESS_CACHE"]
    os.environ["MTEB_CACHE"] = str(Path(os.environ["HARNESS_CACHE"]) / "mteb")
    # Machine facts and derived assets (bf16 calibration, tiny-qwen2, the Qwen2 tokenizer, the
    # stdlib parse): one copy for the whole session, shared by every fresh stage cache.
    os.environ["HARNESS_MACHINE_CACHE"] = str(Path(os.environ["HARNESS_CACHE"]) / "machine")

# Threads: the tests run tiny models on tiny batches, where a second intra-op thread costs more in
# synchronisation than it gains (on a busy 2-core machine, tiny batches ran ~30x slower with two).
# So each test process (and every process it spawns, through the environment) gets its share of
# the cores: all of them split over pytest-xdist's workers, one per worker on a 2-core machine.
# Set before torch is imported; a value the user exported wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = str(max(1, len(os.sched_getaffinity(0)) // max(1, _WORKERS)))
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, _THREADS)

REPO = Path(__file__).resolve().parent.parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's own temp cache (not one named by PYTEST_HARNESS_CACHE)."""
    if _CREATED_BY == os.getpid():
        shutil.rmtree(os.environ["PYTEST_HARNESS_CACHE"], ignore_errors=True)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty stage cache for tests that count what gets built (backbones stay shared)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    return cache


def private_machine_cache(folder: Path, monkeypatch: pytest.MonkeyPatch | None = None, *,
                          tokenizer: bool = True, tiny_qwen2: bool = True) -> Path:
    """An empty machine cache of the test's own (for tests that count what is measured or built once
    per machine), holding copies of the session's converted Qwen2 tokenizer and tiny-qwen2 unless
    the test builds those itself: converting the tokenizer from its tiktoken file costs ~5 s of CPU
    each time, and the test is about something else. Sets $HARNESS_MACHINE_CACHE when given
    `monkeypatch` (forked ranks set it themselves)."""
    from harness.backbones.qwen_tokenizer import tokenizer_folder
    from harness.backbones.tiny_qwen2 import tiny_qwen2_folder
    from harness.paths import machine_cache_root

    session = machine_cache_root()
    assert not folder.exists() and folder.resolve() != session.resolve()
    folder.mkdir(parents=True)
    tiny = tiny_qwen2_folder()  # the session's: built (with its tokenizer) on first use, read after
    for source in ([tiny] if tiny_qwen2 else []) + ([tokenizer_folder()] if tokenizer else []):
        shutil.copytree(source, folder / source.relative_to(session))
    if monkeypatch is not None:
        monkeypatch.setenv("HARNESS_MACHINE_CACHE", str(folder))
    return folder


def in_another_process(code: str, hash_seed: str = "1", **env: str) -> str:
    """Run `code` in a fresh interpreter with another PYTHONHASHSEED; its stdout.

    For determinism tests: the same call twice in one process shares every cache and the string
    hash seed, so it cannot catch an order that depends on either (ranks, resumed runs and a second
    machine are other processes)."""
    import subprocess
    import sys

    child_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": hash_seed, **env}
    done = subprocess.run([sys.executable, "-c", code], env=child_env, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_ranks(fn: Callable[..., None], args: tuple[Any, ...], nprocs: int = 2) -> None:
    """`fn(rank, *args)` in `nprocs` processes started by fork, as `torch.multiprocessing.spawn` would
    start them by spawn, and wait for all: for tests of real gloo process groups.

    Fork, because a spawned rank imports torch, transformers and the test module all over again
    (about 190 s of the full suite's CPU time went to that); the forked rank already has them.
    What the ranks compute is the same either way; the launch a user runs, torchrun with fresh
    interpreters, is tested through `ablate` (test_kalm_recipe) and bench/gpu_smoke.sh."""
    import torch.multiprocessing

    torch.multiprocessing.start_processes(_one_thread_rank, args=(fn, *args), nprocs=nprocs, join=True,
                                          start_method="fork")


def _one_thread_rank(rank: int, fn: Callable[..., None], *args: Any) -> None:
    """A forked rank computes on one thread: a parent that ran OpenMP work on several threads
    (pytest -n 0 gives a process both cores) leaves a thread pool the child cannot use, and its
    first matmul would wait forever."""
    import torch

    torch.set_num_threads(1)
    fn(rank, *args)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def tiny_column_task(folder: Path, name: str) -> Path:
    """A tiny user task in docs/table-matching.md's folder format (3 columns to match; evaluates in
    well under a second): for tests that need several real tasks but not their cost."""
    write(folder / "task.yaml", f"name: {name}\nkind: column\n")
    write(folder / "tables" / "cius_2019.csv",
          "county_name,population,state\nAutauga,55869,AL\nBaldwin,223234,AL\nBarbour,24686,AL\n")
    write(folder / "tables" / "saus" / "2020.csv",
          "County,Pop. 2020,State code\nAutauga,58805,AL\nBaldwin,231767,AL\nBibb,22293,AL\n")
    write(folder / "queries.csv", "query_id,table,column\nq1,cius_2019.csv,county_name\n"
                                  "q2,cius_2019.csv,population\nq3,cius_2019.csv,state\n")
    write(folder / "matches.csv", "query_id,candidate_id\nq1,saus/2020.csv:County\n"
                                  "q2,saus/2020.csv:Pop. 2020\nq3,saus/2020.csv:State code\n")
    return folder


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every tracker offline and under tmp_path, as a run of variant `tiny/base` seed 0."""
    from harness.train.trackers import tracking_env

    root = tmp_path / "tracking"
    monkeypatch.setenv("HARNESS_TRACKING_DIR", str(root))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("TRACKIO_DIR", str(root / "trackio"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value in tracking_env("tiny", "base", 0, "d" * 12, "t" * 12).items():
        monkeypatch.setenv(key, value)
    return root
