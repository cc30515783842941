"""Executor jobs on machines unlike the one that submits them, and jobs that are preempted.

The submit node here sees an AVX2 CPU (no native bf16: `bf16: auto` -> float32) and its jobs see a
CPU with AVX512_BF16 (-> bf16), through HARNESS_SIMULATE_CPU set by the jobs' own setup lines, as a
SLURM login node and its GPU nodes differ. Real submitit-local jobs, real training and mteb runs."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.devices import SIMULATED_CPU_ENV

from .conftest import tiny_column_task, write

RECIPE = """
seeds: [0]
base:
  model: {{backbone: tiny-qwen2, query_max_length: 24, passage_max_length: 32}}
  data: {{total_rows: 32, sources: {{cldr-bitext: {{langs: [yo, ha]}}}}}}
  train: {{steps: 2, batch_size: 4, lr: 1.0e-3}}
  eval: {{tasks: [{task}]}}
variants:
  lr: {{train.lr: 3.0e-3}}
"""
JOB_CPU = f"export {SIMULATED_CPU_ENV}=AVX512_BF16"


def _results(folder: Path) -> list[tuple[str, object]]:
    """(job id, submitit's outcome) of every job that ran: "success" or "error"."""
    return sorted((p.name.split("_")[0], pickle.loads(p.read_bytes())[0]) for p in folder.glob("*_result.pkl"))


@pytest.mark.slow
def test_jobs_resolve_precision_on_their_node_and_the_parent_publishes_what_they_ran(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("submitit")
    from harness.executors import SlurmOptions, submit_runs
    from harness.pipeline import plan, task_revisions
    from harness.recipe import load_recipe

    # one run (a training job and an eval job): two variants' jobs are test_executors' teacher test
    recipe_path = write(tmp_path / "hetero.yaml",
                        RECIPE.format(task=tiny_column_task(tmp_path / "task", "TinyColumnsA")).split("variants:")[0])
    monkeypatch.setenv(SIMULATED_CPU_ENV, "AVX2")  # the submit node
    recipe = load_recipe(recipe_path)
    tasks = task_revisions(recipe)
    plans = plan(recipe, tmp_path / "results", tasks)
    assert {p.train.key["precision"] for p in plans} == {"fp32"}  # what the submit node would compute in
    folder = fresh_cache / "submitit"
    lines: list[str] = []
    submit_runs(plans, tasks, executor="submitit-local", folder=folder, slurm=SlurmOptions(setup=(JOB_CPU,)),
                log=lines.append)
    text = "\n".join(lines)
    print(text, file=sys.__stderr__)  # the run, for the record (capsys holds sys.stdout)
    assert "FAILED" not in text
    outcomes = _results(folder)
    print("jobs:", outcomes, file=sys.__stderr__)
    assert len(outcomes) == 2 and {o for _, o in outcomes} == {"success"}  # a training and an eval job
    variant = "base"
    run = json.loads((tmp_path / "results" / "hetero" / variant / "seed-0" / "run.json").read_text())
    assert run["precision"] == {"train": "bf16", "eval": ["bf16"]}, run  # as the jobs' node ran them
    assert run["device"]["train"] == "cpu"
    assert f"publishing {variant} (seed 0): trained in bf16, evaluated in bf16" in text
    summary = json.loads((tmp_path / "results" / "hetero" / variant / "seed-0" / "train_summary.json").read_text())
    assert summary["precision"] == "bf16" and "AVX512_BF16" in summary["precision_reason"]

    # the same command on the submit node finds every stage the jobs computed: no job, no stage
    stages = sorted(p.relative_to(fresh_cache) for kind in ("data", "train", "eval") for p in (fresh_cache / kind).iterdir())
    capsys.readouterr()
    assert main(["ablate", str(recipe_path), "--results", str(tmp_path / "results"), "--no-leaderboard",
                 "--no-progress", "--executor", "submitit-local"]) == 0
    out = capsys.readouterr().out
    assert "submitted" not in out and out.count("cached") == 2, out  # the training, the eval shard
    assert sorted(p.relative_to(fresh_cache) for kind in ("data", "train", "eval")
                  for p in (fresh_cache / kind).iterdir()) == stages
    assert len(_results(folder)) == 2
    report = (tmp_path / "results" / "hetero" / "report.md").read_text()
    assert "train bf16" in report and "eval bf16" in report


def test_a_job_whose_recipe_changed_names_the_recipe_and_the_change(tmp_path: Path) -> None:
    """Checked with the config, not a precision-resolved stage hash: one line, the recipe, the key."""
    from harness.errors import HarnessError
    from harness.jobs import load_run
    from harness.pipeline import plan, task_revisions
    from harness.recipe import load_recipe

    task = tiny_column_task(tmp_path / "task", "TinyColumnsA")
    recipe_path = write(tmp_path / "edited.yaml", RECIPE.format(task=task))
    recipe = load_recipe(recipe_path)
    p = plan(recipe, tmp_path / "results", task_revisions(recipe))[0]
    submitted = p.config.to_dict()
    os.environ[SIMULATED_CPU_ENV] = "AVX512_BF16"  # another machine: another precision, same recipe
    try:
        assert load_run(str(recipe_path), "base", 0, str(tmp_path / "results"), submitted)[0].config == p.config
    finally:
        del os.environ[SIMULATED_CPU_ENV]
    write(recipe_path, RECIPE.format(task=task).replace("lr: 1.0e-3", "lr: 2.0e-3"))
    with pytest.raises(HarnessError) as changed:
        load_run(str(recipe_path), "base", 0, str(tmp_path / "results"), submitted)
    message = str(changed.value)
    assert "\n" not in message and str(recipe_path) in message and "variant 'base' (seed 0)" in message
    assert "train.lr: 0.001 -> 0.002" in message and "run ablate again" in message


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.is_file() else []


@pytest.mark.slow
def test_a_preempted_training_job_is_requeued_and_ends_with_the_uninterrupted_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit's signal (USR2, what SLURM sends before the time limit or a preemption) reaches the
    running job after its first checkpoint. With a 10-minute limit submitit counts any signal as a
    timeout, and a timed-out job is requeued only if its callable has checkpoint(): TrainJob's
    resubmits it, the local executor restarts it, and it resumes from that checkpoint."""
    pytest.importorskip("submitit")
    if not Path("/proc/self/task").is_dir():
        pytest.skip("finds the job's process through /proc")
    from safetensors.torch import load_file

    from harness.executors import SlurmOptions, _executor
    from harness.jobs import TrainJob
    from harness.pipeline import plan, run_data, run_train, task_revisions
    from harness.recipe import load_recipe

    text = RECIPE.format(task=tiny_column_task(tmp_path / "task", "TinyColumnsA")).split("variants:")[0]
    text = text.replace("steps: 2, batch_size: 4", "steps: 16, checkpoint_every: 3, batch_size: 4, bf16: false")
    recipe_path = write(tmp_path / "preempted.yaml", text)
    recipe = load_recipe(recipe_path)
    tasks = task_revisions(recipe)

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache-whole"))
    (whole,) = plan(recipe, tmp_path / "results", tasks)
    run_data(whole, tasks, lambda _: None)
    run_train(whole, lambda _: None, show_progress=False)

    cache = tmp_path / "cache-jobs"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))  # the job inherits it
    (p,) = plan(recipe, tmp_path / "results", tasks)
    pool = _executor("submitit-local", cache / "submitit", SlurmOptions(time_minutes=10))
    job = pool.submit(TrainJob(), str(recipe_path), "base", 0, str(tmp_path / "results"), p.config.to_dict())
    deadline = time.time() + 600
    while time.time() < deadline and not list(cache.glob("train/*.partial/step-*/state.pt")):
        assert job.state == "RUNNING", job.stderr()
        time.sleep(0.1)
    (task,) = _children(int(job.job_id))  # the controller's one task: the python process running TrainJob
    os.kill(task, signal.SIGUSR2)
    produced = job.result()
    log = job.stdout() or ""
    assert "TrainJob: preempted or timed out; requeued" in log and "resumed from step" in log, log[-3000:]
    assert task not in _children(int(job.job_id))  # another process finished it
    assert produced["train"]["hash"] == whole.train.hash
    summary = json.loads((cache / "train" / whole.train.hash / "summary.json").read_text())
    assert summary["resumed_from"] >= 3
    a = load_file(cache / "train" / whole.train.hash / "model" / "model.safetensors")
    b = load_file(tmp_path / "cache-whole" / "train" / whole.train.hash / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
