"""The Hugging Face Hub switch, read one way everywhere, and switched off only for a block.

`HF_HUB_OFFLINE` is read as huggingface_hub reads it (1, ON, YES or TRUE, any case);
`HF_DATASETS_OFFLINE` likewise for the datasets library. `offline()` switches both off for the
block it guards and restores the variables and the libraries' constants after it, so no function
changes the process's Hub settings for everything that runs later.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES
_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


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
