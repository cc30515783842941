"""The Hugging Face Hub switch, read one way everywhere, and switched off only for a block.

`HF_HUB_OFFLINE` is read as huggingface_hub reads it (1, ON, YES or TRUE, any case);
`HF_DATASETS_OFFLINE` likewise for the datasets library. `offline()` switches both off for the
block it guards and restores the variables and the libraries' constants after it, so no function
changes the process's Hub settings for everything that runs later.

Hub ids as inputs: a Hub id alone is not an input's identity (its `main` moves), so a Hub backbone,
teacher or `hf-dataset` source is keyed by the commit SHA its revision resolves to, asked of the Hub
at plan time (`revision:` from the recipe, else the default branch), or read from the local Hub
cache (`refs/<revision>`) when the Hub is offline or unreachable. A 40-hex revision is already a
commit and is never looked up. When neither works, a real run stops with one line that says how to
pin the commit; `--dry-run` only warns (`missing_revisions("warn")`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Literal

from harness.errors import HarnessError

_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES
_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
RepoType = Literal["model", "dataset"]
COMMIT = re.compile(r"^[0-9a-f]{40}$")
UNRESOLVED = "unresolved"
_POLICY: ContextVar[str] = ContextVar("harness_missing_revision_policy", default="error")
_warned: set[str] = set()  # one warning line per message per process


def _is_set(name: str) -> bool:
    return os.environ.get(name, "").upper() in _TRUE


def hub_offline() -> bool:
    """The user switched the Hub off (HF_HUB_OFFLINE)."""
    return _is_set("HF_HUB_OFFLINE")


def datasets_offline() -> bool:
    """The datasets library will not reach the Hub (HF_DATASETS_OFFLINE, or the whole Hub off)."""
    return hub_offline() or _is_set("HF_DATASETS_OFFLINE")


@contextmanager
def offline() -> Iterator[None]:
    """Hub clients stay offline inside the block (no retry loop against an unreachable Hub).

    huggingface_hub and datasets read the variables at import time, so their constants are set
    too; everything is put back as it was when the block ends, however it ends."""
    import datasets.config
    import huggingface_hub.constants

    from harness.envvars import scoped_env

    saved = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    with scoped_env({name: "1" for name in _VARIABLES}):
        huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def hub_endpoint() -> str:
    """The Hub the clients talk to: `HF_ENDPOINT` (a mirror), read by huggingface_hub at import."""
    import huggingface_hub.constants

    return str(huggingface_hub.constants.ENDPOINT).rstrip("/")


def hub_reachable(timeout: float = 3.0) -> bool:
    """One HEAD request to the configured endpoint, so an unreachable Hub fails in seconds instead
    of a 70-second retry loop, and a mirror (`HF_ENDPOINT`) is probed instead of huggingface.co.
    Through huggingface_hub's own session, so its proxy and certificate settings apply too."""
    if hub_offline():
        return False
    import huggingface_hub

    try:
        huggingface_hub.get_session().head(hub_endpoint(), timeout=timeout)
    except Exception:  # noqa: BLE001 - any transport failure (refused, DNS, TLS, timeout) means unreachable
        return False
    return True  # any HTTP answer, even 404, means the host is there


@contextmanager
def missing_revisions(policy: Literal["error", "warn"]) -> Iterator[None]:
    """What an unresolvable revision does inside the block: stop (a real run, the default) or warn
    once and key it `unresolved` (--dry-run). Scoped: a later command in this process is unaffected."""
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def cached_commit(repo_id: str, repo_type: RepoType, revision: str = "main") -> str | None:
    """The commit the local Hub cache has for `revision` (its `refs/` file), or None."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    ref = os.path.join(constants.HF_HUB_CACHE, repo_folder_name(repo_id=repo_id, repo_type=repo_type),
                       "refs", revision)
    try:
        with open(ref, encoding="utf-8") as handle:
            sha = handle.read().strip()
    except OSError:
        return None
    return sha if COMMIT.match(sha) else None


def _ask_hub(repo_id: str, repo_type: RepoType, revision: str | None) -> str | None:
    """The commit from the Hub's API, None when it cannot answer; an unknown repo or revision is an error."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    info = api.model_info if repo_type == "model" else api.dataset_info
    try:
        return str(info(repo_id, revision=revision, timeout=10).sha)
    except RevisionNotFoundError:
        raise HarnessError(f"{repo_type} {repo_id!r}: the Hub has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise HarnessError(f"{repo_type} {repo_id!r}: no such repository on {hub_endpoint()} "
                           f"(or it is private: log in with `hf auth login`)") from None
    except Exception:  # noqa: BLE001 - transport failures fall back to the local cache
        return None


@lru_cache(maxsize=None)
def _lookup(repo_id: str, repo_type: RepoType, revision: str | None) -> str | None:
    """The Hub's answer, else the local cache's, once per process (plans ask for the same ids often)."""
    sha = _ask_hub(repo_id, repo_type, revision) if hub_reachable() else None
    return sha or cached_commit(repo_id, repo_type, revision or "main")


def resolve_commit(repo_id: str, repo_type: RepoType, revision: str | None = None) -> str:
    """The commit SHA `revision` (default: the default branch) of a Hub repo names.

    When neither the Hub nor the local cache can say: HarnessError under the `error` policy (a real
    run), one warning line and UNRESOLVED under `warn` (--dry-run).
    """
    if revision and COMMIT.match(revision):
        return revision
    sha = _lookup(repo_id, repo_type, revision)
    if sha:
        return sha
    why = "HF_HUB_OFFLINE=1" if hub_offline() else f"{hub_endpoint()} unreachable"
    message = (f"{repo_type} {repo_id!r}: revision {revision or 'main'!r} cannot be resolved to a commit ({why}, "
               f"and not in the local Hub cache): " + (
                   "pin it with `revision: <40-hex commit>` in the source" if repo_type == "dataset"
                   else "use a local folder") + ", or run once with the Hub reachable")
    if _POLICY.get() == "warn":
        if message not in _warned:
            _warned.add(message)
            print(f"warning: {message}", file=sys.stderr)
        return UNRESOLVED
    raise HarnessError(message)
