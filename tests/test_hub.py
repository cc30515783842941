"""The Hub switch: one reading of HF_HUB_OFFLINE, and offline mode only for the block that needs it."""

from __future__ import annotations

import os
from typing import Any

import pytest

from harness.errors import HarnessError


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("true", True), ("ON", True), ("yes", True),
                                                 ("0", False), ("", False), ("off", False), (None, False)])
def test_hf_hub_offline_is_read_as_huggingface_hub_reads_it(value: str | None, offline: bool,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.constants import ENV_VARS_TRUE_VALUES

    from harness.hub import datasets_offline, hub_offline

    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    if value is None:
        monkeypatch.delenv("HF_HUB_OFFLINE")
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline is ((value or "").upper() in ENV_VARS_TRUE_VALUES)
    assert datasets_offline() is offline
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert datasets_offline() and hub_offline() is offline


class _HubTask:
    """A Hub-hosted task whose data is not in the local cache: loading fails, after noting what it saw."""

    class metadata:  # noqa: N801 - mteb's attribute name
        name = "SomeHubTask"
        dataset = {"path": "someone/some-dataset", "revision": "abc"}

    seen: dict[str, Any] = {}

    def load_data(self) -> None:
        import datasets.config
        import huggingface_hub.constants

        self.seen.update(env=os.environ.get("HF_HUB_OFFLINE"), datasets_env=os.environ.get("HF_DATASETS_OFFLINE"),
                         hub=huggingface_hub.constants.HF_HUB_OFFLINE, datasets=datasets.config.HF_HUB_OFFLINE)
        raise FileNotFoundError("not in the cache")


def test_an_unreachable_hub_switches_offline_only_while_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    from harness.evaluate import benchmarks

    monkeypatch.delenv("HF_HUB_OFFLINE")  # a user who never set it
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(benchmarks, "hub_reachable", lambda timeout=3.0: False)  # this machine has no Hub anyway
    task = _HubTask()
    with pytest.raises(HarnessError, match="SomeHubTask: its dataset 'someone/some-dataset' is not available offline"):
        benchmarks.require_hub_data(task)
    assert task.seen == {"env": "1", "datasets_env": "1", "hub": True, "datasets": True}  # offline while loading
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"  # and as before after
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False and datasets.config.HF_HUB_OFFLINE is False
