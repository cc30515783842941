"""`ablate` with an executor: a training job per run, then its evaluation as task shards, each a
submitit job; the parent publishes and reports once all are done. Real jobs (`submitit-local`),
real training and real mteb runs on the offline suite."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.evaluate.shards import split_tasks, task_size

from .conftest import tiny_column_task, write

# Three real tasks, two of them tiny user folders, so four job processes stay affordable on 2 cores.
RECIPE = """
seeds: [0]
base:
  model: {{backbone: tiny-qwen2, query_max_length: 24, passage_max_length: 32}}
  data: {{total_rows: 32, sources: {{cldr-bitext: {{langs: [yo, ha]}}}}}}
  train: {{steps: 2, batch_size: 4, lr: 1.0e-3}}
  eval: {{tasks: [{a}, HarnessValentineColumnMatching, {b}]}}
"""
SHARD_1 = "HarnessValentineColumnMatching"
SHARD_2 = "TinyColumnsA, TinyColumnsB"


def _recipe(tmp_path: Path, text: str = RECIPE) -> Path:
    a = tiny_column_task(tmp_path / "task-a", "TinyColumnsA")
    b = tiny_column_task(tmp_path / "task-b", "TinyColumnsB")
    return write(tmp_path / "jobs.yaml", text.format(a=a, b=b))


def _ablate(recipe: Path, results: Path, *extra: str) -> int:
    return main(["ablate", str(recipe), "--results", str(results), "--no-leaderboard", "--no-progress", *extra])


def _run_files(results: Path) -> dict[str, bytes]:
    run = results / "jobs" / "base" / "seed-0"
    return {name: (run / name).read_bytes() for name in ("scores.json", "units.parquet")}


def _eval_stages(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (cache / "eval").iterdir() if not p.name.startswith(".")}


@pytest.mark.slow
def test_sharded_eval_jobs_equal_a_serial_run_and_rerun_only_what_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("submitit")
    recipe = _recipe(tmp_path)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache-serial"))
    assert _ablate(recipe, tmp_path / "serial") == 0
    serial = _run_files(tmp_path / "serial")

    cache = tmp_path / "cache-jobs"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))  # the jobs inherit it: nothing is shared with the serial run
    capsys.readouterr()
    assert _ablate(recipe, tmp_path / "sharded", "--executor", "submitit-local", "--eval-shards", "2") == 0
    out = capsys.readouterr().out
    assert out.count("submitted training of base (seed 0)") == 1
    # balanced by size: the column-matching task (268 samples) alone, the two tiny ones (6 each) together
    assert f"submitted eval shard 1/2 of base (seed 0) (1 task(s): {SHARD_1})" in out
    assert f"submitted eval shard 2/2 of base (seed 0) (2 task(s): {SHARD_2})" in out
    assert out.count("finished ") == 3 and "report written to" in out
    assert _run_files(tmp_path / "sharded") == serial  # identical scores.json and units.parquet
    for task in ("TinyColumnsA", "HarnessValentineColumnMatching", "TinyColumnsB"):
        mteb_json = [json.loads((root / "jobs" / "base" / "seed-0" / "mteb" / f"{task}.json").read_text())
                     for root in (tmp_path / "serial", tmp_path / "sharded")]
        assert mteb_json[0]["scores"] == mteb_json[1]["scores"]
    assert any((cache / "submitit" / "jobs").glob("*_log.err"))  # submitit's job logs live in the cache

    # one task's stage lost: the same command redoes that task only, in the one shard that holds it
    stages = _eval_stages(cache)
    scores = json.loads((tmp_path / "sharded" / "jobs" / "base" / "seed-0" / "run.json").read_text())["stages"]
    lost = scores["eval:TinyColumnsB"]
    import shutil

    shutil.rmtree(cache / "eval" / lost)
    assert _ablate(recipe, tmp_path / "sharded", "--executor", "submitit-local", "--eval-shards", "2") == 0
    out = capsys.readouterr().out
    assert "training of base (seed 0) cached" in out and "eval shard 1/2 of base (seed 0) cached" in out
    assert out.count("submitted ") == 1 and "submitted eval shard 2/2" in out
    again = _eval_stages(cache)
    assert set(again) == set(stages)
    assert {k: v for k, v in again.items() if k != lost} == {k: v for k, v in stages.items() if k != lost}
    assert _run_files(tmp_path / "sharded") == serial


@pytest.mark.slow
def test_a_failed_shard_is_named_with_its_tasks_and_log(tmp_path: Path, fresh_cache: Path) -> None:
    pytest.importorskip("submitit")
    from harness.executors import submit_runs
    from harness.pipeline import plan, run_data, run_train, task_revisions
    from harness.recipe import load_recipe

    recipe_path = _recipe(tmp_path)
    recipe = load_recipe(recipe_path)
    tasks = task_revisions(recipe)
    (p,) = plan(recipe, tmp_path / "results", tasks)
    run_data(p, tasks, print)
    run_train(p, print, show_progress=False)
    _recipe(tmp_path, RECIPE.replace("lr: 1.0e-3", "lr: 2.0e-3"))  # edited while its jobs wait
    with pytest.raises(HarnessError) as failed:
        submit_runs([p], tasks, executor="submitit-local", folder=fresh_cache / "submitit", eval_shards=2,
                    log=lambda _: None)
    message = str(failed.value)
    assert "2 job(s) did not finish" in message and "running the same command again" in message
    assert "eval shard 1/2 of base (seed 0) failed [job " in message
    assert f"tasks: {SHARD_1}; log: " in message and f"tasks: {SHARD_2}; log: " in message
    assert "changed since the job was submitted (train.lr: 0.001 -> 0.002)" in message  # the recipe's change
    logs = [line.split("log: ")[1] for line in message.splitlines() if "log: " in line]
    assert len(logs) == 2 and all(Path(log).is_file() for log in logs)
    assert not (tmp_path / "results").exists()  # nothing half-published


def test_shards_are_balanced_and_stable_on_real_task_sizes() -> None:
    from harness.evaluate.benchmarks import get_benchmark

    tasks = get_benchmark("MTEB(Multilingual, v2)").tasks
    sizes = {t.metadata.name: task_size(t) for t in tasks}
    assert len(sizes) == 131 and all(v > 0 for v in sizes.values())  # mteb's statistics, offline
    shards = split_tasks(sizes, 8)
    assert sorted(t for s in shards for t in s) == sorted(sizes)  # each task in exactly one shard
    names = list(sizes)
    random.Random(0).shuffle(names)
    assert split_tasks({n: sizes[n] for n in names}, 8) == [sorted(s, key=names.index) for s in shards]
    totals = sorted(sum(sizes[t] for t in s) for s in shards)
    largest = max(sizes.values())
    # greedy largest-first: no shard exceeds the ideal share by more than one task
    assert totals[-1] <= max(largest, sum(totals) / 8 + largest)
    assert sorted(map(len, split_tasks(sizes, 500))) == [1] * 131  # never an empty shard


def test_slurm_shards_depend_on_their_training_job(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    from submitit.slurm.slurm import _make_sbatch_string

    from harness.executors import SlurmOptions, slurm_parameters
    from harness.pipeline import plan, task_revisions
    from harness.recipe import load_recipe

    recipe = load_recipe(_recipe(tmp_path, RECIPE.replace("lr: 1.0e-3", "lr: 1.0e-3, nproc: 4")))
    (p,) = plan(recipe, tmp_path / "results", task_revisions(recipe))
    options = SlurmOptions(partition="gpu")
    train = _make_sbatch_string("python x", tmp_path, **slurm_parameters(p, options))
    shard = _make_sbatch_string("python x", tmp_path, **slurm_parameters(p, options, shard="2of3", after="4242"))
    assert "#SBATCH --gpus-per-node=4" in train and "dependency" not in train
    assert "#SBATCH --gpus-per-node=1" in shard and "#SBATCH --job-name=harness-jobs-base-s0-eval2of3" in shard
    assert "#SBATCH --dependency=afterok:4242" in shard and "#SBATCH --kill-on-invalid-dep=yes" in shard
    assert "#SBATCH --partition=gpu" in shard  # (an unknown parameter name would raise in rendering)


def test_eval_shards_need_an_executor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _recipe(tmp_path)
    assert _ablate(recipe, tmp_path / "r", "--eval-shards", "2") == 2
    err = capsys.readouterr().err
    assert "--eval-shards 2" in err and "submitit-local" in err and "Traceback" not in err
    assert _ablate(recipe, tmp_path / "r", "--executor", "submitit-local", "--eval-shards", "0") == 2
    assert not (tmp_path / "r").exists()
    assert main(["ablate", str(recipe), "--dry-run", "--eval-shards", "2", "--executor", "submitit-local",
                 "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"shard 1/2: 268 samples, 0/1 cached: {SHARD_1}" in out
    assert f"shard 2/2: 12 samples, 0/2 cached: {SHARD_2}" in out


@pytest.mark.slow
def test_a_training_job_waits_for_its_teachers_training_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A variant whose filtering teacher is the recipe's own base: with jobs, its training job is
    submitted only once base's training job has ended (submitit-local has no job dependencies), and
    its data stage is keyed by base's train stage."""
    pytest.importorskip("submitit")
    from .test_references import RECIPE as TEACHER_RECIPE  # base + a variant filtered by base

    recipe = write(tmp_path / "teach.yaml", TEACHER_RECIPE.format(name="teach"))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert _ablate(recipe, tmp_path / "r", "--executor", "submitit-local") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    base_done = lines.index(next(line for line in lines if line.startswith("finished training of base")))
    dependent = next(i for i, line in enumerate(lines) if line.startswith("submitted training of trained-teacher"))
    assert "after training of base (seed 0)" in lines[dependent] and base_done < dependent, out
    card = json.loads((tmp_path / "r" / "teach" / "trained-teacher" / "seed-0" / "data_card.json").read_text())
    assert card["filter"]["teacher"]["spec"] == "variant:teach/base"
    for variant in ("base", "trained-teacher"):
        assert (tmp_path / "r" / "teach" / variant / "seed-0" / "scores.json").is_file()
