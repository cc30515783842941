"""Code retrieval pairs (docstring -> function body) from Python's own standard library.

Real human-written text and code that ships with every Python install, built the way
CodeSearchNet builds its pairs: the query is a function's docstring summary, the document is
the function's source with the docstring removed. The pairs are a training source (train split)
and an mteb retrieval task (test split). The split is by module, so a model never sees a
module's functions in training and is then tested on its siblings.

The data depends on the Python version (3.11 here); everything else is deterministic.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.errors import HarnessError

Split = Literal["train", "test"]

# Directories that are tests, tools, vendored third-party code or bundled wheels, not library API.
SKIPPED_DIRS = frozenset(
    {"site-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "__pycache__"}
)
MAX_CODE_CHARS = 1500
MIN_QUERY_WORDS = 4
MIN_BODY_LINES = 2
TEST_SHARE_DENOMINATOR = 5  # one module in five (by hash) is held out for evaluation

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class CodePair:
    id: str  # stable, e.g. "json.decoder:JSONDecoder.decode"
    query: str  # the docstring's first paragraph, whitespace-collapsed
    code: str  # the function's source without its docstring, dedented, at most MAX_CODE_CHARS
    module: str  # dotted module name, the unit of the train/test split


def split_of(module: str) -> Split:
    """The split a module belongs to: a pure function of its name, so it never changes."""
    held_out = int(hashlib.sha256(module.encode("utf-8")).hexdigest(), 16) % TEST_SHARE_DENOMINATOR == 0
    return "test" if held_out else "train"


def stdlib_code_pairs(split: Split) -> list[CodePair]:
    """The pairs of one split, sorted by id (a fresh list; the parse behind it is cached)."""
    if split not in ("train", "test"):
        raise HarnessError(f"stdlib code pairs: unknown split {split!r}; allowed: 'train', 'test'")
    return sorted((pair for pair in all_stdlib_code_pairs() if split_of(pair.module) == split), key=lambda p: p.id)


@functools.lru_cache(maxsize=1)
def all_stdlib_code_pairs() -> tuple[CodePair, ...]:
    """Every de-duplicated pair of both splits, in sorted file order then source order.

    Cached in the process and on disk (the machine cache, keyed by the Python version and every
    file's path, size and mtime): parsing the whole standard library takes ~5 s, and every
    process that builds the code task or source would pay it.
    """
    import json

    from harness import atomic
    from harness.hashing import content_hash
    from harness.paths import machine_cache_root

    root = Path(sysconfig.get_paths()["stdlib"])
    files = _library_files(root)
    stats = [(path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns) for path in files for st in [path.stat()]]
    cached = machine_cache_root() / "stdlib-code" / f"{content_hash([sys.version, str(root), CACHE_FORMAT, stats])}.json"
    try:
        return tuple(CodePair(**entry) for entry in json.loads(cached.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass  # not cached yet (or unreadable): parse, then store
    pairs = _parse_library(root, files)
    try:
        atomic.write_json(cached, [dataclasses.asdict(pair) for pair in pairs])
    except OSError:  # a read-only home still gets the pairs
        pass
    return pairs


CACHE_FORMAT = 1  # bump when CodePair or the parse rules change


def _parse_library(root: Path, files: list[Path]) -> tuple[CodePair, ...]:
    seen_ids: set[str] = set()
    seen_queries: set[str] = set()
    seen_codes: set[str] = set()
    pairs: list[CodePair] = []
    for path in files:
        module = _module_name(path.relative_to(root))
        for pair in _pairs_in_file(path, module):
            # The first occurrence wins, so a query has exactly one gold document (and vice versa);
            # repeated ids are redefinitions (property setters, platform-specific variants).
            if pair.id in seen_ids or pair.query in seen_queries or pair.code in seen_codes:
                continue
            seen_ids.add(pair.id)
            seen_queries.add(pair.query)
            seen_codes.add(pair.code)
            pairs.append(pair)
    return tuple(pairs)


def _library_files(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*.py"):
        relative_dirs = path.relative_to(root).parts[:-1]
        if not SKIPPED_DIRS.intersection(relative_dirs):
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _pairs_in_file(path: Path, module: str) -> Iterator[CodePair]:
    try:
        # decode_source honours PEP 263 coding cookies and normalises newlines, as import does.
        source = importlib.util.decode_source(path.read_bytes())
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    # Equivalent to ast.get_source_segment(padded=True) for whole-line statements, but that
    # function re-splits the file on every call, which is quadratic over a large module.
    lines = source.splitlines(keepends=True)
    for qualname, function in _functions(tree.body, prefix=""):
        pair = _pair(function, qualname, module, lines)
        if pair is not None:
            yield pair


FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, FunctionNode]]:
    """Functions in source order (methods and nested functions included) with Python qualnames."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            qualname = prefix + node.name
            yield qualname, node
            yield from _functions(node.body, qualname + ".<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, prefix + node.name + ".")
        else:
            # Definitions under if/try/with at module or class level (platform variants).
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    nested = [c.body if isinstance(c, ast.ExceptHandler) else [c] for c in children]
                    yield from _functions([s for group in nested for s in group], prefix)


def _pair(function: FunctionNode, qualname: str, module: str, lines: list[str]) -> CodePair | None:
    docstring = ast.get_docstring(function, clean=True)
    if docstring is None:
        return None
    query = " ".join(_PARAGRAPH_BREAK.split(docstring.strip(), maxsplit=1)[0].split())
    if len(query.split()) < MIN_QUERY_WORDS:
        return None

    doc_node, rest = function.body[0], function.body[1:]
    if not rest or _is_trivial(rest):
        return None
    assert doc_node.end_lineno is not None and function.end_lineno is not None
    # Cut whole lines only: skip the rare docstring that shares a line with other code.
    if doc_node.lineno == function.lineno or rest[0].lineno == doc_node.end_lineno:
        return None
    if lines[doc_node.lineno - 1][: doc_node.col_offset].strip():
        return None

    header = lines[function.lineno - 1 : doc_node.lineno - 1]
    body = lines[doc_node.end_lineno : function.end_lineno]
    if sum(1 for line in body if line.strip()) < MIN_BODY_LINES:
        return None
    code = _dedent(header + body, indent=lines[function.lineno - 1][: function.col_offset]).rstrip()
    return CodePair(id=f"{module}:{qualname}", query=query, code=_truncate(code), module=module)


def _dedent(lines: list[str], indent: str) -> str:
    """Remove the `def` line's own indentation from every line that carries it.

    Not textwrap.dedent: a multi-line string literal whose lines start at column 0 (pydoc's HTML
    templates) makes the common margin empty, and the function would stay indented.
    """
    return "".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)


def _is_trivial(statements: list[ast.stmt]) -> bool:
    """A body that only says "not here": `pass`, `...` or `raise NotImplementedError`."""
    if len(statements) != 1:
        return False
    (statement,) = statements
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return statement.value.value is Ellipsis
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        exc = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _truncate(code: str) -> str:
    """At most MAX_CODE_CHARS, cut at a line end when there is one so no token is split."""
    if len(code) <= MAX_CODE_CHARS:
        return code
    cut = code[:MAX_CODE_CHARS]
    line_end = cut.rfind("\n")
    return cut[:line_end].rstrip() if line_end > 0 else cut
