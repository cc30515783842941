"""What each hard-negative mining rule keeps on the quickstart's data (no asserts): a markdown table.

    HF_HUB_OFFLINE=1 python bench/bench_mining.py [--recipe recipes/quickstart.yaml] [--negatives 7]

Builds the recipe's base data (the offline suite's train rows, minilm as the teacher) once per rule
through the data stage's own code (`build_mix`): KaLM's window and NV-Retriever's positive-aware
rules at their published settings, with `data.hard_negatives` raised to `--negatives` so every rule
has slots to fill. One teacher pass serves all of them (the table says whether it was a cache hit).
Per rule: rows kept, negatives mined from the ranking / random padding, ranked candidates screened,
removed as likely false negatives, and the teacher scores of the mined negatives relative to their
positive (ratio negative / positive where the positive scores > 0, margin positive - negative).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RULES: dict[str, dict[str, Any]] = {
    "window (recipe's ranks)": {"method": "window"},
    "window, hardest": {"method": "window", "sampling": "hardest"},
    "perc_pos 0.95": {"method": "perc_pos", "percent": 0.95},
    "perc_pos 0.95, random": {"method": "perc_pos", "percent": 0.95, "sampling": "random"},
    "margin_pos 0.05": {"method": "margin_pos", "margin": 0.05},
    "top_k_abs 0.7": {"method": "top_k_abs", "max_score": 0.7},
    "top_k_abs 0.5": {"method": "top_k_abs", "max_score": 0.5},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/quickstart.yaml", help="recipe whose base data to mine")
    parser.add_argument("--negatives", type=int, default=7, help="data.hard_negatives for every rule (KaLM: 7)")
    args = parser.parse_args()

    from harness.config import DataConfig
    from harness.data.mix import build_mix
    from harness.recipe import load_recipe

    base = load_recipe(args.recipe).variants[0].config.data
    if base.filter is None:
        raise SystemExit(f"{args.recipe}: its base has no data.filter to mine with")
    print(f"{args.recipe}: {base.total_rows} rows, teacher {base.filter.teacher}, window "
          f"{list(base.filter.window)}, depth {base.filter.depth}, top_k {base.filter.top_k}, "
          f"{args.negatives} negatives per row\n")
    print("| rule | teacher pass | rows | mined | padding | candidates | removed as false neg. | "
          "neg/pos p10 | p50 | p90 | margin p10 | p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, negatives in RULES.items():
        data = base.model_dump(mode="json")
        data["hard_negatives"] = args.negatives
        data["filter"]["negatives"] = negatives
        rows, card = build_mix(DataConfig.model_validate(data))
        report = card["filter"]
        mining, counts = report["mining"], report["negatives"]
        ratio, margin = mining["ratio_to_positive"], mining["margin_below_positive"]
        share = mining["removed_as_false_negatives"] / max(1, mining["candidates"])
        print(f"| {name} | {report['teacher']['teacher_pass']} | {len(rows)} | {counts['mined']} | "
              f"{counts['padding']} | {mining['candidates']} | {mining['removed_as_false_negatives']} "
              f"({share:.0%}) | {ratio.get('p10', '-')} | {ratio.get('p50', '-')} | {ratio.get('p90', '-')} | "
              f"{margin.get('p10', '-')} | {margin.get('p50', '-')} |")


if __name__ == "__main__":
    main()
