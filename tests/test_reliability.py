"""Bad input and a bad environment end in one clear message and write nothing.

One test per failure class of issue 10: each runs the real command (`ablate`, `train`, `eval`,
`leaderboard`) and asserts the exact message, the exit code (2 bad input, 1 runtime failure) and
that nothing was written — no results, no leaderboard, no cache (or, for a stage that failed,
nothing but its empty lock file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

from .conftest import REPO, write

OK = """base:
  model: {backbone: minilm}
  data: {sources: {stdlib-code: {max_rows: 40}}}
  train: {steps: 2, batch_size: 4, lr: 1e-5}
  eval: {tasks: [HarnessCodeRetrieval]}
"""
SAFE = "allowed: letters, digits and . _ - + = , @ (first character a letter, digit or _)"


def _ablate(recipe: Path, tmp_path: Path, *extra: str) -> int:
    return main(["ablate", str(recipe), "--results", str(tmp_path / "results"),
                 "--leaderboard", str(tmp_path / "lb.md"), "--no-progress", *extra])


def _assert_nothing_written(tmp_path: Path, cache: Path) -> None:
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "lb.md").exists()
    assert not cache.exists()


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err.removeprefix("error: ").rstrip("\n")


# ----------------------------------------------------------------------------- recipes

# (id, recipe text, expected message after "<recipe path>: ")
BAD_RECIPES = [
    ("name-traversal", "name: ../../somewhere\n" + OK,
     f"key `name`: the name '../../somewhere' is not a safe folder name; {SAFE}"),
    ("name-absolute", "name: /tmp/elsewhere\n" + OK,
     f"key `name`: the name '/tmp/elsewhere' is not a safe folder name; {SAFE}"),
    ("variant-dotdot", OK + "variants:\n  ..: {train.lr: 1e-3}\n",
     f"key `variants`: the variant name '..' is not a safe folder name; {SAFE}"),
    ("variant-dot", OK + "variants:\n  .: {train.lr: 1e-3}\n",
     f"key `variants`: the variant name '.' is not a safe folder name; {SAFE}"),
    ("variant-slash", OK + "variants:\n  a/b: {train.lr: 1e-3}\n",
     f"key `variants`: the variant name 'a/b' is not a safe folder name; {SAFE}"),
    ("variant-nul", OK + 'variants:\n  "a\\0b": {train.lr: 1e-3}\n',
     f"key `variants`: the variant name 'a\\x00b' is not a safe folder name; {SAFE}"),
    ("variant-300", OK + f"variants:\n  {'v' * 300}: {{train.lr: 1e-3}}\n",
     "key `variants`: the variant name is 300 characters long; at most 120 are allowed"),
    ("source-name", OK.replace("stdlib-code: {max_rows: 40}", "../x: {kind: stdlib-code}"),
     f"key `base.data`: source name '../x' is not a safe folder name; {SAFE}"),
    ("steps-true", OK.replace("steps: 2", "steps: true"),
     "key `base.train.steps`: Input should be a valid integer (got True)"),
    ("steps-1e30", OK.replace("steps: 2", "steps: 1e30"),
     "key `base.train.steps`: Input should be a valid integer (got 1e+30)"),
    ("steps-huge-int", OK.replace("steps: 2", "steps: 1000000000000"),
     "key `base.train.steps`: Input should be less than or equal to 100000000 (got 1000000000000)"),
    ("lr-1e400", OK + "ablate:\n  train.lr: [1e400]\n",
     "ablate (variant 'lr=inf'): key `train.lr`: Input should be a finite number (got inf)"),
    ("lr-nan", OK.replace("lr: 1e-5", "lr: .nan"),
     "key `base.train.lr`: Input should be a finite number (got nan)"),
    ("batch-float", OK.replace("batch_size: 4", "batch_size: 4.5"),
     "key `base.train.batch_size`: Input should be a valid integer (got 4.5)"),
    ("weight-bool", OK.replace("{max_rows: 40}", "{max_rows: 40, weight: yes}"),
     "key `base.data.sources.stdlib-code.weight`: Input should be a valid number (got True)"),
    ("seeds-repeated", "seeds: [0, 1, 0]\n" + OK,
     "key `seeds`: seed(s) [0] repeated; each seed is one training run of every variant"),
    ("seeds-bool", "seeds: [true]\n" + OK, "key `seeds.0`: Input should be a valid integer (got True)"),
    ("grid-explosion", OK + "mode: grid\nablate:\n" + "".join(
        f"  {k}: [{', '.join(str(i) for i in range(2, 12))}]\n"
        for k in ("train.steps", "train.batch_size", "train.log_every", "data.seed")),
     "key `ablate`: 10000 variants in grid mode; at most 1000 are allowed (split the recipe, or use mode: oneway)"),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BAD_RECIPES])
def test_bad_recipe_is_one_message_and_writes_nothing(tmp_path: Path, fresh_cache: Path,
                                                      capsys: pytest.CaptureFixture[str], text: str,
                                                      expected: str) -> None:
    recipe = write(tmp_path / "bad.yaml", text)
    assert _ablate(recipe, tmp_path) == 2
    assert _error(capsys) == f"{recipe}: {expected}"
    _assert_nothing_written(tmp_path, fresh_cache)


# (id, file content as bytes, expected message after "<resolved recipe path>")
BAD_YAML = [
    ("binary", bytes(range(256)) * 4, ":2: not UTF-8 text (byte 0x80 at offset 128); a recipe must be a UTF-8 YAML file"),
    ("latin-1", OK.encode() + "# café\n".encode("latin-1"),
     ":6: not UTF-8 text (byte 0xe9 at offset 173); a recipe must be a UTF-8 YAML file"),
    ("nul", OK.encode() + b"x: \x00\n", ":6: contains a NUL character; a recipe must be a UTF-8 YAML text file"),
    ("control-char", OK.encode() + b'description: "x\x1ey"\n',
     ":6: control character #x001e is not allowed in YAML; remove it (or write it as an escape such as \\x1e "
     "inside a double-quoted string)"),
    ("duplicate-key", (OK + "base: {}\n").encode(),
     ":6:1: duplicate key `base` (first on line 1); each key may appear once in a mapping"),
    ("duplicate-nested", OK.replace("  train:", "  model: {backbone: tiny-qwen2}\n  train:").encode(),
     ":4:3: duplicate key `model` (first on line 2); each key may appear once in a mapping"),
    # anchors inside an axis's values: the last value is 10**9 strings, which variant naming used to hash
    ("alias-bomb", (OK + "ablate:\n  data.sources.cldr-bitext.langs: [" + ", ".join(
        ["&a [x, x, x, x, x, x, x, x, x, x]"] + [f"&{c} [{', '.join([f'*{p}'] * 10)}]"
                                                 for p, c in zip("abcdefgh", "bcdefghi", strict=True)]) + "]\n").encode(),
     ": YAML aliases expand to more than 50000 values (or refer to themselves); rejected before expanding them"),
    ("alias-cycle", ("x: &x [*x]\n" + OK).encode(),
     ": YAML aliases expand to more than 50000 values (or refer to themselves); rejected before expanding them"),
    ("deep-nesting", b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
     ": YAML nested too deeply; a recipe needs only a few levels"),
]


@pytest.mark.parametrize(("content", "expected"), [pytest.param(c, e, id=i) for i, c, e in BAD_YAML])
def test_bad_yaml_file_is_one_message(tmp_path: Path, fresh_cache: Path, capsys: pytest.CaptureFixture[str],
                                      content: bytes, expected: str) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_bytes(content)
    assert _ablate(recipe, tmp_path) == 2  # an alias bomb is rejected, not expanded (timed: bench/bench_fail_fast.py)
    assert _error(capsys) == f"{recipe.resolve()}{expected}"
    _assert_nothing_written(tmp_path, fresh_cache)


def test_unsafe_file_name_without_a_name_key(tmp_path: Path, fresh_cache: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write(tmp_path / "my recipe (v2).yaml", OK)
    assert _ablate(recipe, tmp_path) == 2
    assert _error(capsys) == (f"{recipe}: the recipe name (the file name 'my recipe (v2).yaml' without .yaml): the "
                              f"name 'my recipe (v2)' is not a safe folder name; {SAFE}; set `name:` or rename the file")
    _assert_nothing_written(tmp_path, fresh_cache)


def test_variant_names_from_values_are_safe_by_construction(tmp_path: Path) -> None:
    from harness.paths import NAME_MAX, name_problem
    from harness.recipe import load_recipe

    recipe = load_recipe(write(tmp_path / "r.yaml", OK + """mode: grid
ablate:
  model.instruction_template: ["../../{instruction}/ x", "Instruct: {instruction}\\n Query: ", "a", "b"]
  model.backbone: [tiny-qwen2, Qwen/Qwen2-0.5B]
  data.sources.cldr-bitext.langs: [[am, yo], [ha]]
  train.lr: [1e-5, 2e-5]
  train.temperature: [0.01, 0.02, 0.05]
  data.sources.stdlib-code.instruction: ["Given a docstring, retrieve the Python function that implements it", null]
"""))
    names = [v.name for v in recipe.variants]
    assert len(names) == len(set(names)) > 100
    assert all(name_problem(n) is None and len(n) <= NAME_MAX for n in names)
    assert "instruction_template=.._.._{instruction}_._x" not in names  # `{`, `}` and `/` are not kept
    assert any(n.startswith("instruction_template=.._.._") for n in names)
    assert any("backbone=Qwen_Qwen2-0.5B" in n for n in names)  # the old rendering where it was safe


def test_no_recipe_writes_outside_the_results_root_and_the_cache(tmp_path: Path, fresh_cache: Path) -> None:
    """Every path a loadable recipe leads to stays under the results root or the cache."""
    from harness.pipeline import plan, task_revisions
    from harness.recipe import load_recipe

    results = tmp_path / "results"
    recipe = load_recipe(write(tmp_path / "r.yaml", "name: x..y\n" + OK + """
ablate:
  model.instruction_template: ["../../../etc/{instruction}", "/abs/{instruction}", "..", "."]
variants:
  x..: {train.lr: 1e-3}
  _..: {train.lr: 2e-3}
"""))
    plans = plan(recipe, results, task_revisions(recipe))
    for p in plans:
        for path in (p.results_dir, p.results_dir.parent / "config.yaml", p.data.dir, p.train.dir,
                     *(s.dir for s in p.evals.values()), p.contamination.dir):
            resolved = path.resolve()
            assert resolved.is_relative_to(results.resolve()) or resolved.is_relative_to(fresh_cache.resolve()), path
        assert p.results_dir.resolve().parent.parent == (results / "x..y").resolve()


# ----------------------------------------------------------------------------- --dry-run checks


def _missing_cases(tmp_path: Path) -> list[tuple[str, str, str]]:
    nomodel = tmp_path / "not-a-model"
    nomodel.mkdir()
    return [
        ("source", OK.replace("stdlib-code: {max_rows: 40}", "mine: {kind: flag-jsonl, path: data/none.jsonl}"),
         f"key `base.data.sources.mine.path`: no such file or folder 'data/none.jsonl' (relative to the current "
         f"folder {Path.cwd()})"),
        ("source-in-axis", OK + "variants:\n  more: {data.sources.mine: {kind: parquet, path: /nowhere/x.parquet}}\n",
         "variant 'more', key `data.sources.mine`: no such file or folder '/nowhere/x.parquet'"),
        ("backbone-folder", OK.replace("backbone: minilm", "backbone: ./models/mine"),
         "key `base.model.backbone`: no such folder './models/mine'"),
        ("backbone-not-a-model", OK.replace("backbone: minilm", f"backbone: {nomodel}"),
         f"key `base.model.backbone`: folder '{nomodel}' has no config.json (not a transformers model folder)"),
        ("backbone-typo", OK.replace("backbone: minilm", "backbone: minilmm"),
         "key `base.model.backbone`: 'minilmm' is not an embedded backbone (did you mean 'minilm'?); for a Hub "
         "model write its full id 'namespace/name'"),
        ("hub-id-form", OK.replace("backbone: minilm", "backbone: org/name/extra"),
         "key `base.model.backbone`: 'org/name/extra' is neither an existing folder nor a Hugging Face Hub id "
         "('name' or 'namespace/name'); a backbone must be one of them"),
        ("teacher", OK.replace("  train:", "  train:").replace(
            "{stdlib-code: {max_rows: 40}}", "{stdlib-code: {max_rows: 40}}, filter: {teacher: ~/teachers/t}"),
         "key `base.data.filter.teacher`: no such folder '~/teachers/t'"),
        ("no-sources", "description: an empty recipe is all defaults, and a mix needs a source\n",
         "key `base.data.sources`: is empty: name at least one training source (e.g. stdlib-code: {})"),
        ("task-folder", OK.replace("tasks: [HarnessCodeRetrieval]", "tasks: [./tasks/mine]"),
         "key `eval` (variant 'base'): no such task folder './tasks/mine' (a table-matching task folder holds "
         "task.yaml)"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_dry_run_finds_every_missing_path(tmp_path: Path, fresh_cache: Path, capsys: pytest.CaptureFixture[str],
                                          case: int) -> None:
    _, text, expected = _missing_cases(tmp_path)[case]
    recipe = write(tmp_path / "bad.yaml", text)
    assert _ablate(recipe, tmp_path, "--dry-run") == 2
    assert _error(capsys) == f"{recipe}: {expected}"
    assert _ablate(recipe, tmp_path) == 2  # the real run stops at the same place, before any work
    assert _error(capsys) == f"{recipe}: {expected}"
    _assert_nothing_written(tmp_path, fresh_cache)


def test_unsafe_task_name_in_a_task_folder(tmp_path: Path, fresh_cache: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tasks" / "mine"
    write(folder / "task.yaml", "name: ../../Evil\nkind: tuple\n")
    recipe = write(tmp_path / "r.yaml", OK.replace("tasks: [HarnessCodeRetrieval]", f"tasks: [{folder}]"))
    assert _ablate(recipe, tmp_path) == 2
    assert _error(capsys) == (f"{recipe}: key `base.eval.tasks`: {folder / 'task.yaml'}: key `name`: the task "
                              f"name '../../Evil' is not a safe folder name; {SAFE}")
    _assert_nothing_written(tmp_path, fresh_cache)


def test_outputs_that_cannot_be_created_stop_before_any_work(tmp_path: Path, fresh_cache: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = write(tmp_path / "ok.yaml", OK)
    blocker = write(tmp_path / "a-file", "x")
    assert main(["ablate", str(recipe), "--results", str(blocker / "results"), "--no-leaderboard"]) == 2
    assert _error(capsys) == f"results root {blocker / 'results'}: cannot be created because {blocker} is a file, not a folder"
    assert main(["ablate", str(recipe), "--results", str(tmp_path / "results"),
                 "--leaderboard", str(blocker / "lb.md")]) == 2
    assert _error(capsys) == f"leaderboard folder {blocker}: cannot be created because {blocker} is a file, not a folder"
    monkeypatch.setenv("HARNESS_CACHE", str(blocker / "cache"))
    assert main(["ablate", str(recipe), "--results", str(tmp_path / "results"), "--no-leaderboard"]) == 2
    assert _error(capsys) == f"cache ($HARNESS_CACHE) {blocker / 'cache'}: cannot be created because {blocker} is a file, not a folder"
    assert not (tmp_path / "results").exists() and not fresh_cache.exists() and blocker.read_text() == "x"


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write(tmp_path / "bad.yaml", OK.replace("steps: 2", "steps: true"))
    for argv in (["--debug", "ablate", str(recipe)], ["ablate", str(recipe), "--debug"]):
        assert main([*argv, "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {recipe}: key `base.train.steps`") and "Traceback (most recent call last)" in err
    assert "--debug" in subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True,
                                       cwd=REPO, check=True).stdout


def test_a_bug_still_shows_its_traceback_after_one_summary_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from harness.failures import report

    try:
        {}["missing"]  # a genuine bug class: not an expected failure
    except KeyError as exc:
        assert report(exc) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "error: unexpected KeyError: 'missing'"
    assert "This is a bug in the harness" in err and "Traceback (most recent call last)" in err


# ----------------------------------------------------------------------------- data files


def _jsonl_config(tmp_path: Path, on_error: str) -> Path:
    data = tmp_path / "data" / "mine.jsonl"
    data.parent.mkdir(parents=True)
    data.write_bytes(b'{"query": "q1", "pos": ["p1"]}\n{"query": "caf\xe9", "pos": ["p2"]}\n'
                     b'{"query": "q3", "pos": ["p3"]}\n')
    return write(tmp_path / "variant.yaml", json.dumps({
        "model": {"backbone": "minilm"}, "train": {"steps": 1, "batch_size": 2},
        "data": {"sources": {"mine": {"kind": "flag-jsonl", "path": str(data), "on_error": on_error}}}}))


def test_non_utf8_jsonl_row_fails_with_file_and_line(tmp_path: Path, fresh_cache: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = _jsonl_config(tmp_path, "fail")
    assert main(["train", str(config), "--no-progress"]) == 2
    assert _error(capsys) == f"{tmp_path / 'data' / 'mine.jsonl'}:2: not UTF-8 text (byte 0xe9 at column 15)"
    # the failed data stage left nothing but empty lock files: no stage, no staging, no .partial
    left = [p for p in fresh_cache.rglob("*") if p.is_file()]
    assert left and all(p.name.endswith(".lock") and p.stat().st_size == 0 for p in left), left
    assert not [p for p in fresh_cache.rglob("*") if p.is_dir() and p.parent.name in ("data", "train")]


def test_non_utf8_jsonl_row_is_skipped_and_counted(tmp_path: Path, fresh_cache: Path) -> None:
    from harness.cli import load_variant_config
    from harness.train.stage import build_data

    card = build_data(load_variant_config(_jsonl_config(tmp_path, "skip")))
    source = card["sources"]["mine"]
    assert card["built"] and card["rows"] == 2 and source["malformed_rows_skipped"] == 1
    assert source["malformed_examples"] == [f"{tmp_path / 'data' / 'mine.jsonl'}:2: not UTF-8 text (byte 0xe9 at column 15)"]


def test_non_utf8_table_matching_csv(tmp_path: Path, fresh_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "dedup"
    write(root / "task.yaml", "name: Dedup\nkind: tuple\n")
    write(root / "tables" / "people.csv", "name,city\nAnn Lee,Oslo\nann lee,oslo\nBo Ek,Lund\n")
    (root / "queries.csv").write_bytes(b"query_id,table,row\nq0,people.csv,0\nq1,p\xe9ople.csv,1\n")
    write(root / "matches.csv", "query_id,candidate_id\nq0,people.csv:1\n")
    assert main(["eval", "minilm", "--tasks", str(root), "--dry-run", "--results", str(tmp_path / "results")]) == 2
    assert _error(capsys) == f"{root / 'queries.csv'}:3: not UTF-8 text (byte 0xe9 at offset 39); save the file as UTF-8"
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- the filesystem


def test_leaderboard_under_a_file_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = write(tmp_path / "a-file", "x")
    assert main(["leaderboard", "--results", str(REPO / "results"), "--out", str(blocker / "sub" / "lb.md")]) == 1
    assert _error(capsys) == f"cannot create {blocker / 'sub'}: {blocker} is a file, not a folder"
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def _unshare_available() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && echo ok"],
                           capture_output=True, text=True, check=False)
    return probe.stdout.strip() == "ok"


needs_mounts = pytest.mark.skipif(not _unshare_available(),
                                  reason="needs `unshare -rm` to mount a small tmpfs (a full / read-only disk)")


def _in_mount_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["unshare", "-rm", "sh", "-ec", script], capture_output=True, text=True, cwd=tmp_path,
                          env=env, check=False, timeout=600)


@needs_mounts
def test_full_disk_is_one_message_with_path_and_free_space(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = _in_mount_namespace(
        f"mount -t tmpfs -o size=64k tmpfs {disk}; head -c 65536 /dev/zero > {disk}/filler || true; "
        f"{sys.executable} -m harness leaderboard --results {REPO / 'results'} --out {disk}/lb.md || echo rc=$?; "
        f"ls -A {disk}", tmp_path)
    assert "Traceback" not in proc.stderr
    assert proc.stderr == (f"error: no space left on device while writing {disk}/lb.md (0 B free of 64.0 KiB on that "
                           "filesystem); free some space or point $HARNESS_CACHE / --results elsewhere, then run the "
                           "same command: finished stages are kept\n")
    assert proc.stdout.splitlines() == ["rc=1", "filler"]  # no leaderboard, no temp file


@needs_mounts
def test_read_only_results_root(tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    disk.mkdir()
    write(tmp_path / "ok.yaml", OK)
    proc = _in_mount_namespace(
        f"mount -t tmpfs -o size=64k,ro tmpfs {disk}; "
        f"{sys.executable} -m harness leaderboard --results {REPO / 'results'} --out {disk}/lb.md || echo rc=$?; "
        f"{sys.executable} -m harness ablate ok.yaml --dry-run --results {disk}/results || echo rc=$?", tmp_path)
    assert proc.stderr.splitlines() == [
        f"error: read-only file system: {disk}/lb.md; point $HARNESS_CACHE / --results at a writable folder",
        f"error: results root {disk}/results: cannot be written (read-only file system on {disk})"]
    assert proc.stdout.splitlines()[-2:] == ["rc=1", "rc=2"]


@pytest.mark.slow
@needs_mounts
def test_disk_full_mid_checkpoint(tmp_path: Path) -> None:
    """A real training run whose checkpoint write fills the disk: one message, nothing published."""
    from harness.backbones.qwen_tokenizer import tokenizer_folder
    from harness.backbones.tiny_qwen2 import tiny_qwen2_folder

    backbone, tokenizer = tiny_qwen2_folder(), tokenizer_folder()  # built once in the shared test cache
    disk = tmp_path / "disk"
    disk.mkdir()
    write(tmp_path / "variant.yaml", json.dumps({
        "model": {"backbone": "tiny-qwen2", "query_max_length": 16, "passage_max_length": 16},
        "data": {"sources": {"stdlib-code": {"max_rows": 16}}},
        "train": {"steps": 4, "batch_size": 4, "checkpoint_every": 2}}))
    size_mb = (sum(p.stat().st_size for p in backbone.rglob("*") if p.is_file())
               + sum(p.stat().st_size for p in tokenizer.rglob("*") if p.is_file())) // 2**20 + 12
    proc = _in_mount_namespace(
        f"mount -t tmpfs -o size={size_mb}m tmpfs {disk}; mkdir -p {disk}/backbones {disk}/tokenizers; "
        f"cp -r {backbone} {disk}/backbones/; cp -r {tokenizer} {disk}/tokenizers/; "
        f"HARNESS_CACHE={disk} OMP_NUM_THREADS=1 {sys.executable} -m harness train variant.yaml --no-progress "
        f"|| echo rc=$?; find {disk}/train {disk}/data -mindepth 1", tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"error: no space left on device while writing {disk}/train/")
    assert "B free of" in errors[0] and errors[0].endswith("then run the same command: finished stages are kept")
    listing = proc.stdout.splitlines()
    assert listing[0] == "rc=1"
    # the data stage is complete; of the train stage only its resumable work folder and lock remain
    train = sorted(Path(p).name for p in listing[1:] if Path(p).parent == disk / "train")
    stage = train[-1].removesuffix(".partial")
    assert train == [f".{stage}.lock", f"{stage}.partial"]
    assert any(Path(p).name == "card.json" and Path(p).parent.parent == disk / "data" for p in listing[1:])
    assert not [p for p in listing[1:] if p.endswith(".tmp")]
