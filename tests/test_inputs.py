"""Every input is keyed by content (issue 17): file sources by their bytes (size + mtime as the quick
check), Hub ids by the commit they resolve to, and a source that changes during a build is caught."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import hub
from harness.config import VariantConfig
from harness.errors import HarnessError
from harness.stages import data_stage
from harness.train.stage import build_data

from .conftest import write

SHA = "0123456789abcdef0123456789abcdef01234567"


def _jsonl(path: Path, n: int, word: str = "apple") -> Path:
    lines = [json.dumps({"query": f"what is {word} {i}?", "pos": [f"{word} {i} is a fruit number {i}"]})
             for i in range(n)]
    return write(path, "\n".join(lines) + "\n")


def _config(source: Path, **data: object) -> VariantConfig:
    return VariantConfig.model_validate({"data": {"sources": {"mine": {"kind": "flag-jsonl", "path": str(source)}},
                                                  **data}})


def test_a_jsonl_rewritten_in_place_is_a_new_data_stage_and_a_touched_one_the_cached_stage(
        tmp_path: Path, fresh_cache: Path) -> None:
    from harness.data.mix import mix_dir

    source = _jsonl(tmp_path / "data" / "fruit.jsonl", 12)
    config = _config(source)
    first = data_stage(config)
    assert first.key["data"]["sources"]["mine"]["input"]["content"]  # the bytes are in the key, not only the path
    assert build_data(config, show_progress=False)["built"] and first.done()
    filtered = _config(source, filter={"teacher": "minilm"})
    mix_before = mix_dir(filtered.data)

    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched: same bytes, new mtime
    touched = data_stage(config)
    assert touched.hash == first.hash and touched.done()
    assert not build_data(config, show_progress=False)["built"]  # the cached stage, not a rebuild

    _jsonl(source, 12, word="pear")  # rewritten in place: same path, same size class, other rows
    rewritten = data_stage(config)
    assert rewritten.hash != first.hash and not rewritten.done()
    assert mix_dir(filtered.data) != mix_before  # the unfiltered mix a filter reads follows the bytes too
    card = build_data(config, show_progress=False)
    assert card["built"] and card["rows"] == 12
    from harness.data.table import open_table

    assert next(iter(open_table(rewritten.dir))).query == "what is pear 0?"


def test_a_source_that_changes_while_the_stage_is_built_is_not_committed(
        tmp_path: Path, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.data.mix as mix

    folder = tmp_path / "data"
    _jsonl(folder / "a.jsonl", 8)
    late = _jsonl(folder / "b.jsonl", 8, word="plum")
    config = _config(folder)
    stage = data_stage(config)
    real = mix.iter_source

    def reading_while_a_writer_appends(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for i, row in enumerate(real(*args, **kwargs)):  # type: ignore[arg-type]
            if i == 3:  # another program appends to one of the files mid-read
                with late.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"query": "late?", "pos": ["late row"]}) + "\n")
            yield row

    monkeypatch.setattr(mix, "iter_source", reading_while_a_writer_appends)
    with pytest.raises(HarnessError) as caught:
        build_data(config, show_progress=False)
    message = str(caught.value)
    assert str(late) in message and "changed while" in message and "\n" not in message
    assert str(folder / "a.jsonl") not in message  # names the file that changed, not every file
    assert not stage.done()
    assert [p.name for p in (fresh_cache / "data").iterdir() if not p.name.endswith(".lock")] == []  # no staging left
    monkeypatch.setattr(mix, "iter_source", real)
    after = data_stage(config)  # the new bytes are a new stage, built normally
    assert after.hash != stage.hash and build_data(config, show_progress=False)["rows"] == 17


@pytest.fixture
def fresh_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty local Hub cache and no memo of earlier lookups."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    hub._lookup.cache_clear()
    yield cache
    hub._lookup.cache_clear()


def _fake_hub(monkeypatch: pytest.MonkeyPatch, sha: str, asked: list[tuple[str, str, object]]) -> None:
    """The Hub answering: huggingface_hub's API returns `sha` (and records what was asked)."""
    import huggingface_hub

    def info(kind: str):  # type: ignore[no-untyped-def]
        def call(self: object, repo_id: str, *, revision: object = None, timeout: object = None, **_: object):
            asked.append((kind, repo_id, revision))
            return SimpleNamespace(sha=sha)
        return call

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", info("model"))
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", info("dataset"))
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)


def test_hub_ids_resolve_to_the_commit_the_hub_names_and_it_is_in_the_key(
        monkeypatch: pytest.MonkeyPatch, fresh_hub: Path) -> None:
    from harness.backbones.fingerprint import backbone_identity

    asked: list[tuple[str, str, object]] = []
    _fake_hub(monkeypatch, SHA, asked)
    assert hub.resolve_commit("org/data", "dataset", "v2") == SHA
    assert hub.resolve_commit("org/data", "dataset", "v2") == SHA  # asked once per process
    assert backbone_identity("org/model") == {"spec": "org/model", "commit": SHA}
    assert hub.resolve_commit("org/data", "dataset", "f" * 40) == "f" * 40  # a commit is never looked up
    assert asked == [("dataset", "org/data", "v2"), ("model", "org/model", None)]

    config = VariantConfig.model_validate({"data": {"sources": {"hub": {"kind": "hf-dataset", "dataset": "org/data",
                                                                        "revision": "v2"}}}})
    stage = data_stage(config)
    assert stage.key["data"]["sources"]["hub"]["input"] == {"commit": SHA}
    hub._lookup.cache_clear()
    _fake_hub(monkeypatch, "a" * 40, asked)  # the branch moved: another stage
    assert data_stage(config).hash != stage.hash


def test_offline_a_hub_revision_comes_from_the_local_cache_or_is_one_clear_line(
        monkeypatch: pytest.MonkeyPatch, fresh_hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write(fresh_hub / "datasets--org--cached" / "refs" / "main", SHA)  # what a previous online run left
    assert hub.resolve_commit("org/cached", "dataset") == SHA

    with pytest.raises(HarnessError) as caught:  # a real run stops: its key would not name the data
        hub.resolve_commit("org/absent", "dataset")
    message = str(caught.value)
    assert "\n" not in message and "HF_HUB_OFFLINE=1" in message and "revision: <40-hex commit>" in message

    with hub.missing_revisions("warn"):  # --dry-run: one warning line, no error
        assert hub.resolve_commit("org/absent", "dataset") == hub.UNRESOLVED
        assert hub.resolve_commit("org/absent", "dataset") == hub.UNRESOLVED
    with pytest.raises(HarnessError):  # the policy held for the block only
        hub.resolve_commit("org/absent", "dataset")
    err = capsys.readouterr().err
    assert err.count("warning: dataset 'org/absent'") == 1 and err.count("\n") == 1


def test_an_unreachable_hub_fails_fast_without_hf_hub_offline(
        monkeypatch: pytest.MonkeyPatch, fresh_hub: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(HarnessError, match=r"http://127\.0\.0\.1:9 unreachable"):
        hub.resolve_commit("org/model", "model")


def test_dry_run_of_a_hub_dataset_recipe_offline_warns_and_a_run_stops(
        tmp_path: Path, fresh_cache: Path, fresh_hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    recipe = write(tmp_path / "hubdata.yaml", """
seeds: [0]
base:
  data: {sources: {hub: {kind: hf-dataset, dataset: org/absent-data}}}
  eval: {tasks: [HarnessCodeRetrieval]}
""")
    assert main(["ablate", str(recipe), "--dry-run", "--no-lengths", "--results", str(tmp_path / "r"), "--no-leaderboard"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning: dataset 'org/absent-data'") == 1
    assert main(["ablate", str(recipe), "--results", str(tmp_path / "r"), "--no-leaderboard"]) != 0
    assert "org/absent-data" in capsys.readouterr().err
    assert not (fresh_cache / "data").is_dir()  # nothing was built


def test_the_eval_key_holds_the_mteb_version() -> None:
    from importlib.metadata import version

    from harness.stages import eval_stage

    stage = eval_stage(VariantConfig(), "HarnessCodeRetrieval", "rev")
    assert stage.key["evaluator"] == {"mteb": version("mteb")}


@pytest.mark.slow
def test_run_json_names_the_machine_per_stage_and_results_hold_no_path_of_the_cache(
        tmp_path: Path, fresh_cache: Path) -> None:
    from harness.cli import main
    from harness.devices import cpu_capability, cpu_model
    from harness.paths import cache_root

    from .conftest import tiny_column_task

    task = tiny_column_task(tmp_path / "task", "TinyColumnsInputs")
    source = _jsonl(tmp_path / "data" / "fruit.jsonl", 24)
    recipe = write(tmp_path / "machine.yaml", f"""
seeds: [0]
base:
  model: {{backbone: tiny-qwen2, query_max_length: 24, passage_max_length: 32}}
  data:
    hard_negatives: 1
    sources: {{mine: {{kind: flag-jsonl, path: {source}}}}}
    filter: {{teacher: minilm, top_k: null, window: [1, 4], depth: 8, max_length: 32, bf16: false}}
  train: {{steps: 1, batch_size: 4, bf16: false}}
  eval: {{tasks: [{task}], bf16: false}}
""")
    results = tmp_path / "results"
    assert main(["ablate", str(recipe), "--results", str(results), "--no-leaderboard", "--no-progress"]) == 0
    run = json.loads((results / "machine" / "base" / "seed-0" / "run.json").read_text())
    expected = {"device": "cpu", "cpu": cpu_model(), "cpu_capability": cpu_capability()}
    assert {k: run["machine"]["train"][k] for k in expected} == expected
    assert {k: run["machine"]["data_teacher"][k] for k in expected} == expected  # the teacher pass's encoding
    assert [{k: m[k] for k in expected} for m in run["machine"]["eval"].values()] == [expected]
    assert run["inputs"]["sources"]["mine"]["content"]  # the bytes that were read
    assert not Path(run["checkpoint"]).is_absolute() and (cache_root() / run["checkpoint"] / "config.json").is_file()
    report = (results / "machine" / "report.md").read_text()
    assert f"Made on: {cpu_model()} ({cpu_capability()}" in report
    cache = str(fresh_cache)
    leaked = [p for p in results.rglob("*") if p.is_file() and cache.encode() in p.read_bytes()]
    assert leaked == []  # nothing written under results/ names this machine's cache
