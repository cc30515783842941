"""Bad input fails at once: the time to reject it, as a ratio to a rejection that does no work.

These were wall-clock asserts in tests (`< 20 s`), which flake on a loaded machine and say nothing
on a fast one. Here each slow-risk case is timed beside a baseline that takes the same code path
up to a cheap error, in a fresh process each (imports included), and the ratio is printed:
about 1 means "fails at once"; a retrying network call or an expanded alias bomb shows as 10x+.

    python bench/bench_fail_fast.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

OK_RECIPE = """seeds: [0]
base:
  model: {backbone: minilm}
  data: {sources: {cldr-bitext: {langs: [yo]}}}
  eval: {tasks: [HarnessCLDRBitextMining]}
"""
# anchors inside an axis's values: the last value is 10**9 strings once expanded
ALIAS_BOMB = OK_RECIPE + "ablate:\n  data.sources.cldr-bitext.langs: [" + ", ".join(
    ["&a [x, x, x, x, x, x, x, x, x, x]"] + [f"&{c} [{', '.join([f'*{p}'] * 10)}]"
                                             for p, c in zip("abcdefgh", "bcdefghi", strict=True)]) + "]\n"
DUPLICATE_KEY = OK_RECIPE + "base: {}\n"

HUB_DATASET = ("from harness.data.readers import read_hf_dataset\n"
               "try:\n    read_hf_dataset({name!r})\nexcept Exception as exc:\n    print(type(exc).__name__)\n")


def _timed(cmd: list[str], env: dict[str, str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="runs per case (the fastest is kept)")
    args = parser.parse_args()

    from harness.devices import cpu_capability

    work = Path(tempfile.mkdtemp(prefix="bench-fail-fast-"))
    offline = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HARNESS_CACHE": str(work / "cache"),
               "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    online = {k: v for k, v in offline.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    harness = [sys.executable, "-m", "harness"]

    def eval_cmd(task: str) -> list[str]:
        return [*harness, "eval", "minilm", "--tasks", task, "--results", str(work / "r"),
                "--leaderboard", str(work / "lb.md"), "--no-progress"]

    def ablate_cmd(text: str, name: str) -> list[str]:
        recipe = work / f"{name}.yaml"
        recipe.write_text(text, encoding="utf-8")
        return [*harness, "ablate", str(recipe), "--results", str(work / "r"), "--leaderboard", str(work / "lb.md")]

    cases = [  # (what, slow-risk command and env, baseline command and env)
        ("Hub task, HF_HUB_OFFLINE=1", (eval_cmd("Banking77Classification"), offline),
         (eval_cmd("NoSuchTask"), offline)),
        ("Hub task, Hub unreachable, offline not set", (eval_cmd("Banking77Classification"), online),
         (eval_cmd("NoSuchTask"), online)),
        ("Hub dataset, HF_HUB_OFFLINE=1",
         ([sys.executable, "-c", HUB_DATASET.format(name="KaLM-Embedding/KaLM-embedding-finetuning-data")], offline),
         ([sys.executable, "-c", HUB_DATASET.format(name=str(work / "no-such-folder"))], offline)),
        ("YAML alias bomb in a recipe", (ablate_cmd(ALIAS_BOMB, "bomb"), offline),
         (ablate_cmd(DUPLICATE_KEY, "duplicate"), offline)),
    ]
    print(f"CPU capability {cpu_capability()}; best of {args.repeats}; each run a fresh process")
    print(f"{'case':<46} {'slow-risk s':>11} {'baseline s':>10} {'ratio':>6}")
    for what, (cmd, env), (base_cmd, base_env) in cases:
        risky, base = _timed(cmd, env, args.repeats), _timed(base_cmd, base_env, args.repeats)
        print(f"{what:<46} {risky:>11.2f} {base:>10.2f} {risky / base:>6.2f}")


if __name__ == "__main__":
    main()
