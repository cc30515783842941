"""False-positive rate of the multi-seed per-task test under a true null, before and after issue 20.

    python bench/bench_seed_calibration.py [--runs 2000] [--old-runs 200] [--units 1000] [--shapes mixed ...]

Cost at the defaults: the new test ~100 s for all 27 cells; the old bootstrap (2,000 resamples per run)
~30 min — pass --old-runs 0 to skip it.

Two arms drawn from the same distribution, per task: y[a, s, u] = theta_u + delta[a, u] + g[a, s] + r[a, s, u]
(power.py's model). Noise shapes (sd of the paired unit difference from delta / of the residual r):
  resid-only     0    / 0.05  (the issue's simulation: unit noise independent per seed)
  mixed          0.05 / 0.05
  unit-dominant  0.05 / 0.01  (an arm's per-unit gains repeat across its seeds)
Seed sd g: 0, 1x and 5x the unit-noise standard error SE = sd(one seed's paired differences) / sqrt(n).
Per cell: the share of runs with p < 0.05 and its Clopper-Pearson 95 % interval.
  after  = harness.report.seeds.two_level_test (the report's test)
  before = the two-level bootstrap harness used until issue 20 (seeds with replacement within each arm,
           then shared units; p from the bootstrap distribution), re-implemented here since it is gone.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.report.seeds import two_level_test  # noqa: E402

SHAPES = {"resid-only": (0.0, 0.05), "mixed": (0.05, 0.05), "unit-dominant": (0.05, 0.01)}
SEEDS = (2, 3, 5)
SEED_SD = (0, 1, 5)  # x the unit-noise standard error


def simulate(rng: np.random.Generator, n: int, k: int, sd_unit: float, sd_resid: float,
             sd_seed: float) -> tuple[np.ndarray, np.ndarray]:
    theta = rng.uniform(0.2, 0.8, n)
    arms = [theta + rng.normal(0, sd_unit / math.sqrt(2), n) + rng.normal(0, sd_seed, (k, 1))
            + rng.normal(0, sd_resid, (k, n)) for _ in range(2)]
    return arms[0], arms[1]


def old_two_level_bootstrap_p(c: np.ndarray, v: np.ndarray, rng: np.random.Generator, resamples: int) -> float:
    """The pre-issue-20 test: seeds drawn with replacement per arm, then one shared draw of units."""
    n = c.shape[1]
    idx = rng.integers(0, n, (resamples, n))
    per_seed_c = np.stack([row[idx].mean(axis=1) for row in c], axis=1)  # (B, k)
    per_seed_v = np.stack([row[idx].mean(axis=1) for row in v], axis=1)

    def weights(k: int) -> np.ndarray:
        drawn = rng.integers(0, k, (resamples, k))
        return (drawn[:, :, None] == np.arange(k)).sum(axis=1) / k

    boot = (weights(v.shape[0]) * per_seed_v).sum(axis=1) - (weights(c.shape[0]) * per_seed_c).sum(axis=1)
    below = (np.count_nonzero(boot <= 0) + 1) / (resamples + 1)
    above = (np.count_nonzero(boot >= 0) + 1) / (resamples + 1)
    return min(1.0, 2 * min(below, above))


def interval(hits: int, runs: int) -> tuple[float, float]:
    from scipy.stats import beta

    low = float(beta.ppf(0.025, hits, runs - hits + 1)) if hits else 0.0
    high = float(beta.ppf(0.975, hits + 1, runs - hits)) if hits < runs else 1.0
    return low, high


def rate(method: str, shape: str, k: int, multiple: int, runs: int, n: int) -> tuple[int, int]:
    sd_unit, sd_resid = SHAPES[shape]
    se = math.sqrt(sd_unit**2 + 2 * sd_resid**2) / math.sqrt(n)
    rng = np.random.default_rng([k, multiple, len(shape), 0 if method == "after" else 1])
    hits = 0
    for _ in range(runs):
        c, v = simulate(rng, n, k, sd_unit, sd_resid, multiple * se)
        p = two_level_test(c, v).p_value if method == "after" else old_two_level_bootstrap_p(c, v, rng, 2000)
        hits += p < 0.05
    return hits, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="null experiments per cell, new test")
    parser.add_argument("--old-runs", type=int, default=200, help="... for the old bootstrap (2000 resamples each)")
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    print(f"False-positive rate at alpha=0.05 under a true null, {args.units} paired units; "
          "rate % [Clopper-Pearson 95% interval]")
    print(f"| noise | seeds/arm | seed sd | before: two-level bootstrap ({args.old_runs} runs) "
          f"| after: two-level t-test ({args.runs} runs) |")
    print("|---|---|---|---|---|")
    started = time.perf_counter()
    for shape in args.shapes:
        for k in SEEDS:
            for multiple in SEED_SD:
                cells = []
                for method, runs in (("before", args.old_runs), ("after", args.runs)):
                    if runs <= 0:
                        cells.append("–")
                        continue
                    hits, total = rate(method, shape, k, multiple, runs, args.units)
                    low, high = interval(hits, total)
                    cells.append(f"{100 * hits / total:.1f} [{100 * low:.1f}, {100 * high:.1f}]")
                print(f"| {shape} | {k} | {multiple}x SE | {cells[0]} | {cells[1]} |", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
