"""mteb benchmark and task resolution, and the `eval` / `--dry-run` commands, on real mteb
metadata and real models: the African benchmarks mteb defines but does not register, clear
errors for unknown names, dry runs that list every task offline and write nothing, Hub-hosted
tasks that fail at once offline, baselines (mteb's random encoder, minilm) and a user's
table-matching folder plugged in by path."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.evaluate.benchmarks import get_benchmark, get_mteb_task
from harness.recipe import load_recipe

from .conftest import REPO, tiny_column_task, write

AFRICA_LITE_LANGS = {"amh", "hau", "ibo", "yor", "swh", "kin", "xho", "zul", "gaz"}
KALM_BENCHMARKS = ["MTEB(Multilingual, v2)", "MTEB(eng, v2)", "MTEB(cmn, v1)", "MTEB(Africa, v1, lite)"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _eval_stage_dirs(cache: Path) -> set[str]:
    return {p.name for p in (cache / "eval").iterdir()} if (cache / "eval").is_dir() else set()


# ----------------------------------------------------------------------------- resolution


@pytest.mark.parametrize(("name", "alias", "n_tasks"), [
    ("MTEB(Africa, v1)", "AfriMTEB", 35),
    ("MTEB(Africa, v1, lite)", "AfriMTEB-Lite", 13),
])
def test_african_benchmarks_resolve_though_mteb_does_not_register_them(name: str, alias: str, n_tasks: int) -> None:
    import mteb

    with pytest.raises(KeyError):  # the point of our resolver: mteb 2.26's own lookup fails
        mteb.get_benchmark(name)
    bench = get_benchmark(name)
    assert bench.name == name
    assert len(bench.tasks) == n_tasks
    assert len({t.metadata.name for t in bench.tasks}) == n_tasks
    assert get_benchmark(alias) is bench


def test_afrimteb_lite_covers_its_nine_languages() -> None:
    assert set(get_benchmark("AfriMTEB-Lite").tasks.languages) == AFRICA_LITE_LANGS


@pytest.mark.parametrize(("name", "n_tasks"), [
    ("MTEB(Multilingual, v2)", 131), ("MTEB(eng, v2)", 41), ("MTEB(cmn, v1)", 31)])
def test_registered_benchmarks_resolve(name: str, n_tasks: int) -> None:
    bench = get_benchmark(name)
    assert bench.name == name and len(bench.tasks) == n_tasks


def test_unknown_benchmark_suggests_close_names() -> None:
    with pytest.raises(HarnessError, match=r"unknown mteb benchmark 'MTEB\(Afrika, v1\)'.*did you mean.*"
                                           r"MTEB\(Africa, v1\)"):
        get_benchmark("MTEB(Afrika, v1)")
    with pytest.raises(HarnessError, match="did you mean.*AfriMTEB-Lite"):
        get_benchmark("AfriMTEB-lite")


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(HarnessError, match=r"unknown task 'Banking77Classificaton'.*did you mean.*Banking77"):
        get_mteb_task("Banking77Classificaton")
    with pytest.raises(HarnessError, match=r"unknown task 'AfriSentiClasification'.*did you mean.*"
                                           r"AfriSentiClassification"):
        get_mteb_task("AfriSentiClasification")


def test_unknown_task_suggests_superseded_tasks_that_benchmarks_still_use() -> None:
    with pytest.raises(HarnessError, match=r"did you mean: Banking77Classification,"):
        get_mteb_task("Banking77Classificaton")


def test_recipe_with_a_misspelt_benchmark_fails_on_load(tmp_path: Path) -> None:
    path = write(tmp_path / "typo.yaml", """
base:
  model: {backbone: minilm}
  data:
    sources:
      cldr-bitext: {weight: 1.0}
  train: {steps: 3, lr: 1e-5, batch_size: 4}
  eval:
    tasks: [HarnessCLDRBitextMining]
    benchmarks: ["MTEB(Afrika, v1)"]
""")
    with pytest.raises(HarnessError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message and "key `eval`" in message
    assert "MTEB(Afrika, v1)" in message and "did you mean" in message and "MTEB(Africa, v1)" in message


# ----------------------------------------------------------------------------- dry runs


def _expected_kalm_tasks() -> dict[str, str]:
    """Task name -> type over the union, computed with mteb alone (AfriMTEB-Lite straight from
    mteb's definitions) plus the two harness tasks kalm-v1 names."""
    import mteb
    from mteb.benchmarks.benchmarks import benchmarks as defined

    types = {"HarnessCodeRetrieval": "Retrieval", "HarnessCLDRBitextMining": "BitextMining"}
    for bench in [*(mteb.get_benchmark(n) for n in KALM_BENCHMARKS[:3]), defined.MTEB_AFRICA_LITE]:
        types |= {t.metadata.name: t.metadata.type for t in bench.tasks}
    return types


def test_ablate_dry_run_lists_variants_and_every_benchmark_task(tmp_path: Path, fresh_cache: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    code = main(["ablate", str(REPO / "recipes" / "kalm-v1.yaml"), "--dry-run", "--results", str(results),
                 "--leaderboard", str(tmp_path / "leaderboard.md")])
    out = capsys.readouterr().out
    assert code == 0
    recipe = load_recipe(REPO / "recipes" / "kalm-v1.yaml")
    assert [v.name for v in recipe.variants] == ["base", "attention=bidirectional"]
    for variant in recipe.variants:
        assert f"{variant.name}  [seed 0]  hash {variant.hash}" in out
    assert "overrides: (control: no overrides)" in out
    assert "overrides: model.attention='bidirectional'" in out

    expected = _expected_kalm_tasks()
    assert len(expected) > 131
    assert f"\n{len(expected)} evaluation task(s):" in out
    listed = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and "langs:" in line}
    assert set(listed) == set(expected)
    for name, line in listed.items():
        assert line.split()[1] == expected[name], line
        assert ("offline (harness)" if name.startswith("Harness") else "Hugging Face Hub") in line, line
        assert line.split("langs: ")[1].strip(), line
    afrisenti = listed["AfriSentiClassification"]
    assert "Classification" in afrisenti and "Hugging Face Hub" in afrisenti
    assert all(lang in afrisenti for lang in ("amh", "hau", "ibo", "kin", "yor"))
    assert "langs: cmn" in listed["TNews"] and "langs: eng" in listed["Banking77Classification"]
    assert "gaz" in listed["HarnessCLDRBitextMining"]
    assert f"eval 0/{len(expected)} tasks" in out

    assert not results.exists()
    assert not (tmp_path / "leaderboard.md").exists()
    assert not any(p.is_dir() for p in fresh_cache.glob("*") if p.name != "mteb")  # no data/train/eval stage


def test_eval_dry_run_lists_afrimteb_lite_offline(tmp_path: Path, fresh_cache: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "minilm", "--benchmark", "AfriMTEB-Lite", "--dry-run", "--results", str(tmp_path / "r"),
                 "--leaderboard", str(tmp_path / "lb.md"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "model minilm: 13 task(s)" in out and "\n13 evaluation task(s):" in out
    listed = [line for line in out.splitlines() if line.startswith("  ") and "langs:" in line]
    assert len(listed) == 13 and all("Hugging Face Hub" in line for line in listed)
    assert {line.split()[0] for line in listed} == {t.metadata.name for t in get_benchmark("AfriMTEB-Lite").tasks}
    assert not (tmp_path / "r").exists() and not (tmp_path / "lb.md").exists()
    assert not (fresh_cache / "eval").exists()


# ----------------------------------------------------------------------------- real evaluations


def test_hub_task_fails_at_once_offline(tmp_path: Path, fresh_cache: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # How fast it fails is a ratio in bench/bench_fail_fast.py (a hang hits the suite's timeout).
    code = main(["eval", "minilm", "--tasks", "Banking77Classification", "--results", str(tmp_path / "r"),
                 "--leaderboard", str(tmp_path / "lb.md"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Banking77Classification" in err and "'mteb/banking77'" in err and "not available offline" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "lb.md").exists()
    assert _eval_stage_dirs(fresh_cache) == set()


def _hub_reachable() -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.skipif(_hub_reachable(), reason="checks the unreachable-Hub path")
def test_hub_task_fails_at_once_when_the_user_did_not_set_offline(tmp_path: Path, fresh_cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE")  # what a user who never heard of the variable has
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    code = main(["eval", "minilm", "--tasks", "Banking77Classification", "--results", str(tmp_path / "r"),
                 "--leaderboard", str(tmp_path / "lb.md"), "--no-progress"])
    assert code == 2 and "not available offline" in capsys.readouterr().err  # how fast: bench/bench_fail_fast.py


def _eval(model: str, task: str, root: Path) -> int:
    return main(["eval", model, "--tasks", task, "--results", str(root / "results"),
                 "--leaderboard", str(root / "leaderboard.md"), "--no-progress"])


@pytest.fixture(scope="module")
def cldr_baselines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mteb's random encoder, then minilm, on HarnessCLDRBitextMining in one private cache."""
    root = tmp_path_factory.mktemp("baselines")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE", str(root / "cache"))
        assert _eval("random", "HarnessCLDRBitextMining", root) == 0
        assert _eval("minilm", "HarnessCLDRBitextMining", root) == 0
    return root


def _main_score(root: Path, model_dir: str, task: str) -> float:
    scores = json.loads((root / "results" / "baselines" / model_dir / "seed-0" / "scores.json").read_text())
    assert scores["seed"] == 0
    return float(scores["tasks"][task]["main_score"])


@pytest.mark.slow
def test_random_baseline_row_and_minilm_beats_it(cldr_baselines: Path) -> None:
    root = cldr_baselines
    seed_dir = root / "results" / "baselines" / "random-encoder" / "seed-0"
    assert (seed_dir / "scores.json").is_file() and (seed_dir / "units.parquet").is_file()
    scores = json.loads((seed_dir / "scores.json").read_text())
    task = scores["tasks"]["HarnessCLDRBitextMining"]
    assert task["main_metric"] == "f1" and task["type"] == "BitextMining"
    assert len(task["subsets"]) == 19  # English vs 19 languages
    units = pd.read_parquet(seed_dir / "units.parquet")
    assert len(units) > 0 and set(units["task"]) == {"HarnessCLDRBitextMining"}

    board = (root / "leaderboard.md").read_text()
    rows = [line for line in board.splitlines() if line.startswith("|") and "baselines" in line]
    assert any("random-encoder" in row for row in rows) and any("minilm" in row for row in rows)

    random_f1 = _main_score(root, "random-encoder", "HarnessCLDRBitextMining")
    minilm_f1 = _main_score(root, "minilm", "HarnessCLDRBitextMining")
    print(f"HarnessCLDRBitextMining f1: random {random_f1:.4f}, minilm {minilm_f1:.4f}")
    assert random_f1 < 0.05  # chance level: one right pair among ~170 per language
    assert minilm_f1 > random_f1 + 0.15


@pytest.mark.slow
def test_same_eval_again_is_a_cache_hit(cldr_baselines: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = cldr_baselines
    monkeypatch.setenv("HARNESS_CACHE", str(root / "cache"))
    stages_before = _eval_stage_dirs(root / "cache")
    assert len(stages_before) == 2  # one per model
    before = _files(root / "results" / "baselines")
    board = (root / "leaderboard.md").read_bytes()
    capsys.readouterr()
    assert _eval("random", "HarnessCLDRBitextMining", root) == 0
    assert _eval("minilm", "HarnessCLDRBitextMining", root) == 0
    out = capsys.readouterr().out
    assert out.count("HarnessCLDRBitextMining cached") == 2
    assert _eval_stage_dirs(root / "cache") == stages_before
    assert _files(root / "results" / "baselines") == before
    assert (root / "leaderboard.md").read_bytes() == board


@pytest.mark.slow
def test_user_table_matching_folder_plugs_in_by_path(tmp_path: Path, fresh_cache: Path) -> None:
    folder = tiny_column_task(tmp_path / "my-task", "TinyCountyColumns")
    assert _eval("minilm", str(folder), tmp_path) == 0
    scores = json.loads((tmp_path / "results" / "baselines" / "minilm" / "seed-0" / "scores.json").read_text())
    assert list(scores["tasks"]) == ["TinyCountyColumns"]
    task = scores["tasks"]["TinyCountyColumns"]
    assert task["type"] == "Retrieval" and task["main_metric"] == "recall_at_10"
    # 3 candidates only (every other column), so each match is in the top 10
    assert task["main_score"] == pytest.approx(1.0)
    assert "TinyCountyColumns (recall_at_10)" in (tmp_path / "leaderboard.md").read_text()
    units = pd.read_parquet(tmp_path / "results" / "baselines" / "minilm" / "seed-0" / "units.parquet")
    assert sorted(units["unit"].unique()) == ["q1", "q2", "q3"]  # a unit is a query
    assert set(units["task"]) == {"TinyCountyColumns"} and "recall_at_10" in set(units["metric"])


# ----------------------------------------------------------------------------- Hub mirrors


def _probe_in_a_fresh_process(endpoint: str) -> tuple[str, bool]:
    """hub_reachable() as a user's process sees it: HF_ENDPOINT set before huggingface_hub is imported."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"}}
    code = ("from harness.evaluate.benchmarks import hub_endpoint, hub_reachable; "
            "print(hub_endpoint()); print(hub_reachable(timeout=5))")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "HF_ENDPOINT": endpoint}, cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1] == "True"


def test_hub_probe_uses_the_configured_endpoint() -> None:
    import http.server
    import threading

    requests: list[str] = []

    class Mirror(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mirror = f"http://127.0.0.1:{server.server_address[1]}"
        assert _probe_in_a_fresh_process(mirror) == (mirror, True)
        assert requests == ["/"]  # the probe went to the mirror, not to huggingface.co
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}"
    assert _probe_in_a_fresh_process(dead) == (dead, False)
