"""Fuzz the recipe front door: malformed recipes through `ablate --dry-run`, counted by outcome.

Every case is a real file run through the real CLI (`harness.cli.main`, in a forked child per
case so a hang in C code or a memory blow-up is killed, not waited for). A case is
- accepted: exit 0 (then every path its plan leads to must lie under the results root / cache),
- a clean error: exit 2 and one `error:` message, no traceback,
- a traceback: anything else (exit 1 with "unexpected", an exception escaping `main`), a bug,
- a hang: over `--timeout` seconds (an alias bomb that expands, say),
and any case that wrote into the results root or the leaderboard is counted as `wrote`.

    python bench/fuzz_recipes.py --cases 1500 --seed 0

Mutations: byte-level (flips, NUL / non-UTF-8 bytes, truncation, duplicated / dropped / re-indented
lines), value-level (booleans, huge / negative / non-finite numbers, strings where numbers go,
path-traversal names, 300-character names, deep nesting), key-level (typos, unknown keys,
duplicate keys, hostile variant / source / recipe names, bad axes, `extends` to odd files) and
YAML alias bombs and cycles.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

SEEDS = [
    (REPO / "recipes" / "quickstart.yaml").read_text(encoding="utf-8"),
    """name: fuzz-base
seeds: [0, 1]
base:
  model: {backbone: minilm, pooling: mean}
  data:
    total_rows: 64
    sources:
      stdlib-code: {weight: 1.0}
      cldr-bitext: {weight: 0.5, langs: [am, yo]}
  train: {steps: 3, batch_size: 4, lr: 1e-5, temperature: 0.05}
  eval: {tasks: [HarnessCodeRetrieval]}
mode: grid
ablate:
  train.lr: [1e-5, 3e-5]
  data.sources.cldr-bitext.weight: [0.0, 0.5]
variants:
  code-only: {data.sources.cldr-bitext.weight: 0.0, train.temperature: 0.02}
""",
]

HOSTILE_VALUES: list[Any] = [
    True, False, None, 0, -1, 1e30, 10**40, "1e400", float("inf"), float("nan"), "", "x" * 300, "../../etc",
    "/abs/path", ".", "..", "a\x00b", "minilmm", [], {}, [[[[[]]]]], {"a": {"b": {"c": None}}}, 0.5, 2**63,
    "Qwen/Qwen2-0.5B", "./missing/folder", "~/nowhere", "café", "\u202e", "{instruction}", -0.0, 1e-400,
]
HOSTILE_NAMES = ["..", ".", "../../x", "/abs", "a/b", "a\\b", "", "x" * 300, "a\x00b", " lead", "new\nline",
                 "tab\tname", "ünï", "CON", "-dash", "..hidden", "ok-name", "base"]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _leaves(value, (*path, i))
    return out


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = root
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return root


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        root = root[part]
    return root


def structural(rng: random.Random, data: dict[str, Any]) -> str:
    import yaml

    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(9)
        paths = _leaves(data)
        target = rng.choice(paths)
        if choice <= 2:
            data = _set(data, target, rng.choice(HOSTILE_VALUES)) if target else data
        elif choice == 3 and target and isinstance(target[-1], str):  # rename a key (typo / hostile name)
            parent = _get(data, target[:-1])
            new = rng.choice([target[-1] + "x", target[-1][:-1], rng.choice(HOSTILE_NAMES), "unknown_key"])
            if isinstance(parent, dict) and new not in parent:
                parent[new] = parent.pop(target[-1])
        elif choice == 4:
            data["name"] = rng.choice(HOSTILE_NAMES + [None, 5, ["x"]])
        elif choice == 5:
            data.setdefault("variants", {})
            if isinstance(data["variants"], dict):
                data["variants"][rng.choice(HOSTILE_NAMES)] = {rng.choice(["train.lr", "train.steps", "x.y", "",
                                                                           "data.sources.n/ew.weight"]):
                                                              rng.choice(HOSTILE_VALUES)}
        elif choice == 6:
            data.setdefault("ablate", {})
            if isinstance(data["ablate"], dict):
                axis = rng.choice(["train.lr", "train.steps", "model.backbone", "data.sources.stdlib-code.weight",
                                   "data.sources.../x.weight", "train..lr", "eval.tasks", "model.instruction_template"])
                data["ablate"][axis] = [rng.choice(HOSTILE_VALUES) for _ in range(rng.randint(0, 4))]
        elif choice == 7:
            data["seeds"] = rng.choice([[0, 0], [True], [-1], [2**40], [], "0", [0.5], list(range(200))])
        else:
            base = data.setdefault("base", {})
            if isinstance(base, dict):
                sources = base.setdefault("data", {}).setdefault("sources", {}) if isinstance(base.get("data", {}), dict) else {}
                if isinstance(sources, dict):
                    sources[rng.choice(HOSTILE_NAMES)] = {"kind": rng.choice(["flag-jsonl", "parquet", "stdlib-code",
                                                                              "hf-dataset", "bogus"]),
                                                          "path": rng.choice(HOSTILE_VALUES)}
    return yaml.safe_dump(data, allow_unicode=rng.random() < 0.5, sort_keys=False)


def byte_level(rng: random.Random, text: str, data: dict[str, Any]) -> bytes:
    raw = bytearray(text.encode("utf-8"))
    lines = text.splitlines(keepends=True)
    choice = rng.randrange(9)
    if choice == 0 and raw:
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if choice == 1:
        pos = rng.randrange(len(raw) + 1)
        return bytes(raw[:pos] + rng.choice([b"\x00", b"\xff\xfe", b"\xe9", b"\t", b"\r", b"{", b"[", b"&a", b"*a",
                                             b"!!python/object:os.system", b"<<: *x"]) + raw[pos:])
    if choice == 2:
        return bytes(raw[: rng.randrange(len(raw) + 1)])
    if choice == 3 and lines:  # duplicate a line (often a duplicate key)
        i = rng.randrange(len(lines))
        return "".join(lines[: i + 1] + [lines[i]] + lines[i + 1:]).encode()
    if choice == 4 and lines:
        i = rng.randrange(len(lines))
        return "".join(lines[:i] + lines[i + 1:]).encode()
    if choice == 5 and lines:
        i = rng.randrange(len(lines))
        lines[i] = rng.choice(["  ", "", "    "]) + lines[i].lstrip(" ")
        return "".join(lines).encode()
    if choice == 6:
        return bomb(rng, data).encode()
    if choice == 7:
        return (text + f"\nextends: {rng.choice(['/dev/zero', '/proc/self/environ', '.', 'self.yaml', '../x.yaml', '/'])}\n").encode()
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))


def bomb(rng: random.Random, data: dict[str, Any]) -> str:
    import yaml

    width, depth = rng.randint(2, 12), rng.randint(2, 9)
    text = yaml.safe_dump({k: v for k, v in data.items() if k not in ("ablate", "variants")}, sort_keys=False)
    if rng.random() < 0.5:  # anchors inside an axis's values, where variant naming hashes them
        anchors = [f"&l0 [{', '.join(['x'] * width)}]"] + [
            f"&l{d} [{', '.join([f'*l{d - 1}'] * width)}]" for d in range(1, depth)]
        axis = rng.choice(["data.sources.cldr-bitext.langs", "model.instruction_template", "eval.tasks"])
        return text + f"ablate:\n  {axis}: [{', '.join(anchors)}]\n"
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for d in range(1, depth):
        lines.append(f"l{d}: &l{d} [{', '.join([f'*l{d - 1}'] * width)}]")
    if rng.random() < 0.2:
        lines.append("cyc: &cyc [*cyc]")
    where = rng.choice(["ablate:\n  train.lr: *l{last}\n", "description: *l{last}\n",
                        "variants:\n  v: {{model.instruction_template: *l{last}}}\n"])
    return "\n".join(lines) + "\n" + where.format(last=depth - 1) + text


def _case_in_child(path: Path, results: Path, board: Path, conn: Any) -> None:
    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["ablate", str(path), "--dry-run", "--results", str(results), "--leaderboard", str(board)])
    except BaseException as exc:  # noqa: BLE001 - escaping main is exactly what this counts
        conn.send(("traceback", f"{type(exc).__name__}: {exc}"))
        return
    text = err.getvalue()
    if code == 0:
        conn.send(("accepted", ""))
    elif code == 2 and text.startswith("error: ") and "Traceback" not in text:
        conn.send(("clean", text.splitlines()[0][:200]))
    else:
        conn.send(("traceback", text[-600:]))


def run_case(path: Path, results: Path, board: Path, timeout: int) -> tuple[str, str]:
    """One case in a forked child: a hang inside C code (expanding an alias bomb while hashing it)
    or a memory blow-up is killed after `timeout` seconds instead of stopping the fuzzer."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_case_in_child, args=(path, results, board, child))
    proc.start()
    child.close()
    outcome = ("hang", f"no answer after {timeout} s")
    if parent.poll(timeout):
        try:
            outcome = parent.recv()
        except EOFError:  # the child died without an answer (a crash in C code, the memory limit)
            outcome = ("traceback", "the case's process died without an answer")
    if proc.is_alive():
        proc.kill()
    proc.join()
    return outcome


def check_paths(path: Path, results: Path, cache: Path) -> str | None:
    """For an accepted recipe: every planned path under the results root or the cache."""
    from harness.pipeline import plan, task_revisions
    from harness.recipe import load_recipe

    recipe = load_recipe(path)
    for p in plan(recipe, results, task_revisions(recipe)):
        for target in (p.results_dir, p.data.dir, p.train.dir, *(s.dir for s in p.evals.values())):
            try:
                resolved = target.resolve()
            except (ValueError, OSError):  # e.g. a NUL byte: no such path can be created
                return f"{target!r} (not a valid path)"
            if not (resolved.is_relative_to(results.resolve()) or resolved.is_relative_to(cache.resolve())):
                return str(target)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz recipes through `ablate --dry-run`; print outcome counts.")
    parser.add_argument("--cases", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=30, help="seconds per case before it counts as a hang")
    parser.add_argument("--json", help="also write the counts and examples here")
    parser.add_argument("--keep", action="store_true", help="keep every case file (default: only bad outcomes)")
    args = parser.parse_args()
    import yaml
    from tqdm import tqdm

    work = Path(tempfile.mkdtemp(prefix="fuzz-recipes-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HARNESS_CACHE", str(work / "cache"))
    cache = Path(os.environ["HARNESS_CACHE"])
    os.chdir(work)
    rng = random.Random(args.seed)
    parsed = [yaml.safe_load(s) for s in SEEDS]
    warm = work / "warm.yaml"  # build the offline tasks once, outside the per-case timeout
    warm.write_text(SEEDS[1], encoding="utf-8")
    assert run_case(warm, work / "results", work / "lb.md", 600)[0] == "accepted"
    warm.unlink()
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    started = time.perf_counter()
    for i in tqdm(range(args.cases), desc="fuzz", unit="recipe"):
        seed_index = rng.randrange(len(SEEDS))
        if rng.random() < 0.5:
            content = structural(rng, parsed[seed_index]).encode("utf-8", "surrogatepass")
        else:
            content = byte_level(rng, SEEDS[seed_index], parsed[seed_index])
        path = work / f"case{i}.yaml"
        path.write_bytes(content)
        results, board = work / "results", work / "lb.md"
        outcome, detail = run_case(path, results, board, args.timeout)
        counts[outcome] += 1
        if outcome == "accepted":
            outside = check_paths(path, results, cache)
            if outside:
                counts["outside"] += 1
                examples.setdefault("outside", []).append(f"case{i}: {outside}")
        if results.exists() or board.exists():
            counts["wrote"] += 1
            examples.setdefault("wrote", []).append(f"case{i}")
        if outcome in ("traceback", "hang"):
            examples.setdefault(outcome, []).append(f"case{i}: {detail}")
            (work / f"case{i}.{outcome}").write_text(detail, encoding="utf-8")
        elif not args.keep:
            path.unlink()
        else:
            path.rename(path.with_suffix(f".{outcome}.yaml"))
    elapsed = time.perf_counter() - started
    summary = {"tried": args.cases, "accepted": counts["accepted"], "clean_errors": counts["clean"],
               "tracebacks": counts["traceback"], "hangs": counts["hang"], "wrote": counts["wrote"],
               "outside_roots": counts["outside"], "seconds": round(elapsed, 1), "work": str(work),
               "examples": {k: v[:10] for k, v in examples.items()}}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0 if not (counts["traceback"] or counts["hang"] or counts["wrote"] or counts["outside"]) else 1


if __name__ == "__main__":
    sys.exit(main())
