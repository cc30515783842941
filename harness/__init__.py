"""harness: evaluation-first ablations of text-embedding training recipes.

Kept import-light on purpose: torch, transformers and mteb are imported lazily by the
modules that need them, so `python -m harness --help` answers at once.
"""

__version__ = "0.1.0"
