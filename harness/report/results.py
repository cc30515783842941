"""Read results/ back: the small JSON/parquet files are the only input of reports."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SCORE_COLUMNS = ["recipe", "variant", "seed", "task", "type", "main_metric", "main_score"]


def load_scores(root: Path) -> pd.DataFrame:
    """Every `<recipe>/<variant>/seed-N/scores.json` under `root` (a results/ or one recipe's folder)."""
    rows = []
    for path in sorted(root.rglob("seed-*/scores.json")):
        seed_dir = path.parent
        variant_dir = seed_dir.parent
        recipe = variant_dir.parent.name
        data = json.loads(path.read_text(encoding="utf-8"))
        for task, s in sorted(data["tasks"].items()):
            rows.append((recipe, variant_dir.name, int(seed_dir.name.removeprefix("seed-")), task, s["type"],
                         s["main_metric"], float(s["main_score"])))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)
