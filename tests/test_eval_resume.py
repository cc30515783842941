"""Per-task commits: a real `python -m harness ablate` killed (SIGKILL) while evaluating task k of n
keeps tasks 1..k-1; the rerun (in the test's process: a second interpreter would only add its ~10 s
of imports) evaluates only the rest and ends with the same results as a run that
was never interrupted. Also: each eval stage keeps mteb's own TaskResult JSON, and `export mteb`
copies it verbatim."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

from .conftest import REPO, tiny_column_task, write

# Two tiny user tasks first, then a bigger one: the kill lands while task 2 or 3 runs.
TASKS = ["TinyColumnsA", "TinyColumnsB", "HarnessValentineColumnMatching"]
RECIPE = """
seeds: [0]
base:
  model: {{backbone: tiny-qwen2, query_max_length: 24, passage_max_length: 48}}
  data: {{total_rows: 32, sources: {{cldr-bitext: {{langs: [yo, ha]}}}}}}
  train: {{steps: 2, batch_size: 4, lr: 1.0e-3}}
  eval: {{tasks: [{a}, {b}, HarnessValentineColumnMatching]}}
"""


def _cmd(recipe: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "harness", "ablate", str(recipe), "--results", str(results), "--no-leaderboard",
            "--no-progress"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "HARNESS_CACHE": str(cache), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _eval_stages(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (cache / "eval").iterdir() if not p.name.startswith(".")}


@pytest.mark.slow
def test_killed_during_eval_keeps_finished_tasks_and_resumes_to_the_same_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    a = tiny_column_task(tmp_path / "task-a", "TinyColumnsA")
    b = tiny_column_task(tmp_path / "task-b", "TinyColumnsB")
    recipe = write(tmp_path / "resume.yaml", RECIPE.format(a=a, b=b))
    killed_cache, results = tmp_path / "cache-killed", tmp_path / "results-killed"
    proc = subprocess.Popen(_cmd(recipe, results), env=_env(killed_cache), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # kill the moment the first task is committed: the second is then running
        seen.append(line)
        if line.startswith("  eval ") and f"{TASKS[0]}: " in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    kept = _eval_stages(killed_cache)
    assert 1 <= len(kept) < len(TASKS), kept  # killed in the middle of the evaluation
    assert not results.exists()  # nothing published from a half-evaluated run

    # the rerun (what the user types next) in this process: it finds only what the killed process left on disk
    monkeypatch.setenv("HARNESS_CACHE", str(killed_cache))
    capsys.readouterr()
    assert main(_cmd(recipe, results)[3:]) == 0
    rerun = capsys.readouterr().out
    assert "trained:" not in rerun
    assert sum(line.startswith("  eval ") and line.endswith(" cached") for line in rerun.splitlines()) == len(kept)
    evaluated = [line for line in rerun.splitlines() if line.startswith("  eval ") and " = " in line]
    assert len(evaluated) == len(TASKS) - len(kept)  # "<task>: <metric> = <score>" for the rest only
    after = _eval_stages(killed_cache)
    assert {k: after[k] for k in kept} == kept  # the finished tasks' stages were not rewritten
    assert len(after) == len(TASKS)

    # the uninterrupted reference, in this process too, in a cache of its own
    clean = tmp_path / "results-clean"
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache-clean"))
    assert main(_cmd(recipe, clean)[3:]) == 0
    for name in ("scores.json", "units.parquet"):
        assert (results / "resume" / "base" / "seed-0" / name).read_bytes() == \
            (clean / "resume" / "base" / "seed-0" / name).read_bytes(), name

    # each eval stage holds mteb's own files, and the export hands them over unchanged
    from harness.export.mteb import export_results

    (item,) = export_results(results, tmp_path / "export", log=lambda _: None)
    assert item.verbatim and item.model_name == "harness-resume/base-seed0"
    run = json.loads((results / "resume" / "base" / "seed-0" / "run.json").read_text())["stages"]
    folder = tmp_path / "export" / "results" / "harness-resume__base-seed0" / run["train"]
    for task in TASKS:
        stage = killed_cache / "eval" / run[f"eval:{task}"]
        assert (folder / f"{task}.json").read_bytes() == (stage / "mteb.json").read_bytes()
    meta = json.loads((folder / "model_meta.json").read_text())
    assert (meta["name"], meta["revision"], meta["embed_dim"]) == ("harness-resume/base-seed0", run["train"], 64)
