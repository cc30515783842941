"""Environment variables set for a block only: no function changes os.environ for the rest of the
process (a later command in the same process, or a test, must see the user's own settings)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def scoped_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set `values` for the block (child processes such as torchrun ranks inherit them), then
    restore every variable exactly: unset again if it was unset before."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
