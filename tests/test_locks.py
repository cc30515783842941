"""Several processes on one cache: each stage computed once, a live writer's staging never
deleted, a dead one's always cleaned; files with the user's normal permissions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import atomic, locks

from .conftest import REPO, write

DATA_CONFIG = {"model": {"backbone": "minilm"}, "train": {"steps": 1, "batch_size": 2},
               "data": {"sources": {"stdlib-code": {"max_rows": 60}, "cldr-bitext": {"langs": ["yo"], "max_rows": 60}}}}

# A child that builds one data stage through the real stage function and reports what it did.
BUILD_DATA = """
import json, sys
from harness.config import VariantConfig
from harness.train.stage import build_data
card = build_data(VariantConfig.model_validate(json.loads(sys.argv[1])))
print(json.dumps({"built": card["built"], "rows": card["rows"]}), flush=True)
"""

# A child that opens real staging folders for the given artifacts, says so, and waits to be killed.
HOLD_STAGING = """
import sys, time
from harness import atomic
held = [atomic.staged_dir(final) for final in sys.argv[1:]]  # kept referenced: no cleanup until killed
for context in held:
    (context.__enter__() / "partial.bin").write_bytes(b"half")
print("ready", flush=True)
time.sleep(600)
"""


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "HARNESS_CACHE": str(cache), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _holder(finals: list[Path], cache: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_STAGING, *map(str, finals)], env=_env(cache),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_owner_tags_tell_live_from_dead() -> None:
    me = atomic.owner_tag()
    assert not atomic.owner_gone(me)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid = proc.pid
    start = atomic._start_ticks(pid)
    tag = f"{pid}-{start}@{me.split('@')[1]}"
    assert not atomic.owner_gone(tag)
    proc.kill()
    proc.wait()
    assert atomic.owner_gone(tag)
    assert not atomic.owner_gone(f"{pid}-{start}@another-host")  # never presumed dead: maybe a live job
    assert atomic.owner_gone(f"{os.getpid()}-{atomic._start_ticks(os.getpid()) + 1}@{me.split('@')[1]}")  # pid reused


def test_live_staging_is_kept_and_dead_staging_removed(tmp_path: Path, fresh_cache: Path) -> None:
    final = fresh_cache / "data" / "abc123"
    holder = _holder([final], fresh_cache)
    try:
        (live,) = [p for p, _ in atomic.staging_owners(final)]
        # another process computes the same artifact meanwhile: the live staging survives
        assert locks.build_once(final, lambda tmp: (tmp / "card.json").write_text("{}"))
        assert live.is_dir() and (final / "card.json").is_file()
        assert atomic.remove_stale_staging(final) == [] and live.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert atomic.remove_stale_staging(final) == [live] and not live.exists()


def test_two_processes_race_for_one_stage_and_compute_it_once(tmp_path: Path, fresh_cache: Path) -> None:
    """Both children start while the stage's lock is taken, so both are in the race when it opens."""
    from harness.config import VariantConfig
    from harness.stages import data_stage

    stage = data_stage(VariantConfig.model_validate(DATA_CONFIG))
    config = json.dumps(DATA_CONFIG)
    with locks.locked(stage.dir):
        procs = [subprocess.Popen([sys.executable, "-c", BUILD_DATA, config], env=_env(fresh_cache),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        deadline = time.time() + 120
        while time.time() < deadline and not all(p.poll() is not None for p in procs):
            time.sleep(0.2)
            if all(_waiting(p) for p in procs):
                break
        assert all(_waiting(p) for p in procs), "both children should be waiting for the stage's lock"
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = sorted((json.loads(out) for out, _ in outs), key=lambda r: r["built"])
    assert [r["built"] for r in results] == [False, True]  # computed once, the other found it cached
    assert results[0]["rows"] == results[1]["rows"] == 120
    assert all(f"waiting for data stage {stage.hash}" in p._seen for p in procs)  # type: ignore[attr-defined]
    assert sorted(p.name for p in (fresh_cache / "data").iterdir()) == [stage.hash]  # no staging, no lock


def _waiting(proc: subprocess.Popen[str]) -> bool:
    """Whether a child said it waits for a lock (reads stderr without blocking)."""
    import select

    assert proc.stderr is not None
    text = getattr(proc, "_seen", "")
    while select.select([proc.stderr], [], [], 0)[0]:
        line = proc.stderr.readline()
        if not line:
            break
        text += line
    proc._seen = text  # type: ignore[attr-defined]
    return "waiting for" in text


def test_results_files_get_the_users_permissions(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        path = atomic.write_json(tmp_path / "shared" / "scores.json", {"a": 1})
        with atomic.staged_dir(tmp_path / "stage") as tmp:
            atomic.write_text(tmp / "x.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "stage").stat().st_mode & 0o777 == 0o775
    assert (tmp_path / "stage" / "x.txt").stat().st_mode & 0o777 == 0o664
    os.umask(0o022)
    try:
        assert atomic.write_text(tmp_path / "other.txt", "y").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_scratch_folders_live_under_the_cache(fresh_cache: Path) -> None:
    from harness.paths import scratch_root

    holder = _holder([scratch_root() / "harness-pred"], fresh_cache)  # a "killed" evaluation's leftovers
    holder.kill()
    holder.wait()
    assert len(list(scratch_root().glob(".harness-pred.*.tmp"))) == 1
    with atomic.scratch_dir("harness-pred") as tmp:
        assert tmp.parent == fresh_cache / "tmp" and tmp.is_dir()
        assert list(scratch_root().glob(".harness-pred.*.tmp")) == [tmp]  # the dead one is gone
    assert list(scratch_root().iterdir()) == []


def test_a_failing_build_leaves_only_its_lock(tmp_path: Path) -> None:
    def fail(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        locks.build_once(tmp_path / "stage", fail)
    assert [p.name for p in tmp_path.iterdir()] == [".stage.lock"]
    assert locks.build_once(tmp_path / "stage", lambda tmp: (tmp / "ok").write_text("1"))
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]  # the lock file goes once it is done


TINY = """
seeds: [0]
base:
  model: {backbone: tiny-qwen2, query_max_length: 24, passage_max_length: 32}
  data:
    total_rows: 32
    hard_negatives: 1
    sources: {stdlib-code: {}, cldr-bitext: {langs: [yo]}}
    filter: {teacher: minilm, top_k: 20, window: [2, 10], depth: 24, max_length: 32}
  train: {steps: 2, batch_size: 4, lr: 1.0e-3}
  eval: {tasks: [HarnessCodeRetrieval, HarnessCLDRBitextMining], languages: [yor], batch_size: 64}
"""


def test_a_cache_hit_still_removes_a_dead_writers_staging(fresh_cache: Path) -> None:
    """Staging of a killed writer beside a finished artifact goes on the next use, not only on the
    next build (which never comes for a shared backbone or tokenizer); a live writer's stays."""
    final = fresh_cache / "backbones" / "done"
    assert locks.build_once(final, lambda tmp: (tmp / "config.json").write_text("{}"))
    live, dead = _holder([final], fresh_cache), _holder([final], fresh_cache)
    try:
        dead.kill()
        dead.wait()
        assert len(atomic.staging_owners(final)) == 2

        def never(tmp: Path) -> None:
            raise AssertionError("a cache hit must not build")

        assert not locks.build_once(final, never)
        assert [tag.split("-")[0] for _, tag in atomic.staging_owners(final)] == [str(live.pid)]
    finally:
        live.kill()
        live.wait()
    assert not locks.build_once(final, never)
    assert atomic.staging_owners(final) == [] and (final / "config.json").is_file()


def _killed_staging(finals: dict[str, Path], cache: Path) -> dict[str, Path]:
    """Real staging folders for `finals`, left by a process that was then SIGKILLed."""
    holder = _holder(list(finals.values()), cache)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    stale = {kind: atomic.staging_owners(final)[0][0] for kind, final in finals.items()}
    assert all(path.is_dir() for path in stale.values())
    return stale


@pytest.mark.slow
def test_killed_staging_is_cleaned_and_two_concurrent_runs_compute_each_stage_once(
        tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed process leaves real staging in every stage kind; then the same recipe runs in two
    processes at once on that cache (two terminals, or two jobs): both finish, each stage is
    computed once, and every kind cleans its own stale staging — when it is built (planning builds
    the backbone and its tokenizer: stage keys hold the weights' fingerprint; the runs build the
    rest) and when it is found cached (the runs open the finished backbone; the tokenizer's next
    user comes only after them, since a finished backbone carries its own tokenizer)."""
    from harness.backbones import resolve_path
    from harness.backbones.qwen_tokenizer import qwen2_tokenizer, tokenizer_folder
    from harness.backbones.tiny_qwen2 import tiny_qwen2_path
    from harness.data.filtering import ranking_key
    from harness.data.mix import build_mix, teacher_embed
    from harness.paths import scratch_root
    from harness.pipeline import plan, task_revisions
    from harness.recipe import load_recipe

    # Machine facts (bf16 calibration, fingerprints) in tmp too: nothing read from ~/.cache, and the
    # calibration this process makes while planning is the one both runs read (same stage keys).
    monkeypatch.setenv("HARNESS_MACHINE_CACHE", str(tmp_path / "machine"))
    shared = {"backbone": tiny_qwen2_path(), "tokenizer": tokenizer_folder()}
    assert all(final.is_relative_to(tmp_path / "machine") and not final.exists() for final in shared.values())
    stale_before_build = _killed_staging(shared, fresh_cache)

    recipe_path = write(tmp_path / "tiny.yaml", TINY)
    recipe = load_recipe(recipe_path)
    (p,) = plan(recipe, tmp_path / "results", task_revisions(recipe))  # builds backbone + tokenizer
    assert Path(resolve_path("tiny-qwen2")) == shared["backbone"]
    assert {kind for kind, path in stale_before_build.items() if path.exists()} == set()
    spec = p.config.data.filter
    assert spec is not None
    rows, _ = build_mix(p.config.data.model_copy(update={"filter": None}))  # the rows the teacher ranks
    _, teacher_id = teacher_embed(p.config.data)  # the id the data stage keys its teacher pass by
    finals = {
        "data": p.data.dir, "contamination": p.contamination.dir, "train": p.train.dir,
        **{f"eval {t}": s.dir for t, s in p.evals.items()},
        "rankings": fresh_cache / "rankings" / ranking_key(teacher_id, rows, spec.depth, None),
        "eval predictions": scratch_root() / "harness-pred", **shared,
    }
    assert {kind for kind, final in finals.items() if final.exists()} == set(shared)
    stale = _killed_staging(finals, fresh_cache)
    # an unrelated broken folder under results/ must not stop ablate from writing its results
    broken = write(tmp_path / "results" / "other" / "v" / "seed-0" / "scores.json", "{broken")

    cmd = [sys.executable, "-m", "harness", "ablate", str(recipe_path), "--results", str(tmp_path / "results"),
           "--leaderboard", str(tmp_path / "lb.md"), "--no-progress"]
    procs = [subprocess.Popen(cmd, env=_env(fresh_cache), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [proc.communicate(timeout=1200) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-3000:] for _, err in outs]

    # computed once: one process built / trained / evaluated each stage, the other found it cached
    stdout = "".join(out for out, _ in outs)
    assert stdout.count("  data   ") == 2 and stdout.count("built:") == 1, stdout
    assert stdout.count("  train  ") == 2 and stdout.count("trained:") == 1, stdout
    assert stdout.count(": ndcg_at_10 =") == 1 and stdout.count(": f1 =") == 1, stdout
    assert stdout.count("exact overlap(s)") == 1, stdout
    assert any("waiting for" in err for _, err in outs)
    assert all(f"leaderboard: skipped {broken}" in err for _, err in outs)
    scores = tmp_path / "results" / "tiny" / "base" / "seed-0" / "scores.json"
    assert json.loads(scores.read_text())["tasks"].keys() == {"HarnessCodeRetrieval", "HarnessCLDRBitextMining"}
    assert "[tiny](" in (tmp_path / "lb.md").read_text()

    # every stage kind the runs used cleaned its own stale staging; the tokenizer's next user does
    assert {kind for kind, path in stale.items() if path.exists()} == {"tokenizer"}
    qwen2_tokenizer()
    assert not stale["tokenizer"].exists()
    # no temp file or lock is left anywhere
    assert all(final.exists() for kind, final in finals.items() if kind != "eval predictions")
    assert not list(fresh_cache.rglob("*.tmp")) and not list(fresh_cache.rglob("*.lock"))
    assert not list((tmp_path / "results").rglob("*.tmp"))
