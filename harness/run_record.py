"""What run.json says about a run beyond its stage hashes: the machines that made its numbers and
the resolved identity of every input (content fingerprints, Hub commits), read from the stages.

Nothing here is a path of the machine that ran it: results/ is committed and compared across machines.
"""

from __future__ import annotations

import json
from typing import Any

from harness.stages import Stage

MACHINE_FILE = "machine.json"  # written by harness.evaluate.cached into each eval stage


def stage_machine(stage: Stage) -> dict[str, Any] | None:
    """The machine an eval stage recorded (None for stages computed before machines were recorded)."""
    try:
        return json.loads((stage.dir / MACHINE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def machines_record(data_card: dict[str, Any], train_summary: dict[str, Any], evals: dict[str, Stage]
                    ) -> dict[str, Any]:
    """Per stage: the teacher pass's machine (filtered data only), the training's, each eval task's."""
    out: dict[str, Any] = {}
    if data_card.get("filter"):
        out["data_teacher"] = data_card["filter"]["teacher"].get("machine")
    return {**out, "train": train_summary.get("machine"), "eval": {t: stage_machine(s) for t, s in evals.items()}}


def inputs_record(data: Stage, train: Stage) -> dict[str, Any]:
    """Each read source's content fingerprint or Hub commit, the filter teacher's and the backbone's identity."""
    key = data.key["data"]
    sources = {name: entry["input"] for name, entry in key["sources"].items() if "input" in entry}
    out: dict[str, Any] = {"sources": sources, "backbone": train.key["model"]["backbone"]}
    if key.get("filter"):
        out["teacher"] = key["filter"]["teacher"]
    return out
