"""The `variant:RECIPE/VARIANT[@SEED]` reference: its syntax, and the resolver a command put in effect.

`config` validates a reference's form at load time and needs only the syntax. Resolving one needs
recipes and stages (harness.references), which sit above the backbones that load and key it. So
the backbones ask `resolver_for(spec)` for the resolver the running command put in effect with
`using(resolver)`, instead of importing it: no import cycle, and no process-wide table of recipe
folders. Each recipe's references resolve through its own resolver, whatever else was loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from harness.errors import HarnessError

PREFIX = "variant:"
_PATTERN = re.compile(r"^variant:(?P<recipe>[^/@]+)/(?P<variant>[^@]+?)(?:@(?P<seed>\d+))?$")


@dataclass(frozen=True)
class VariantRef:
    recipe: str
    variant: str
    seed: int = 0

    def __str__(self) -> str:
        return f"{PREFIX}{self.recipe}/{self.variant}@{self.seed}"


def is_reference(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse(spec: str) -> VariantRef:
    match = _PATTERN.match(spec)
    if not match:
        raise HarnessError(f"{spec!r}: a trained-variant reference reads variant:RECIPE/VARIANT or "
                           "variant:RECIPE/VARIANT@SEED (e.g. variant:quickstart/base)")
    return VariantRef(match["recipe"], match["variant"], int(match["seed"] or 0))


class ReferenceResolver(Protocol):
    """What the backbones need from a resolver (harness.references.Resolver implements it)."""

    def identity(self, spec: str) -> dict[str, str]: ...

    def checkpoint_of(self, spec: str) -> str: ...

    def backbone_of(self, spec: str) -> str: ...


_ACTIVE: ContextVar[ReferenceResolver | None] = ContextVar("harness_reference_resolver", default=None)


@contextmanager
def using(resolver: ReferenceResolver) -> Iterator[ReferenceResolver]:
    """Put `resolver` in effect for the block (and only the block: the previous one is restored)."""
    token = _ACTIVE.set(resolver)
    try:
        yield resolver
    finally:
        _ACTIVE.reset(token)


def active() -> ReferenceResolver | None:
    """The resolver in effect, if any."""
    return _ACTIVE.get()


def resolver_for(spec: str) -> ReferenceResolver:
    """The resolver in effect; a clear error when a reference is met outside any command's context."""
    resolver = _ACTIVE.get()
    if resolver is None:
        raise HarnessError(f"{spec}: a trained-variant reference resolves within a command that names its recipe "
                           "(ablate, data build, train, eval); none is in effect here (in code: "
                           "`with harness.references.Resolver.for_recipe(path).active(): ...`)")
    return resolver
