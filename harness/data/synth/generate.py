"""Persona-based synthesis: personas in, validated FlagEmbedding rows + a data card out.

Resumable by construction. Every finished example index (kept, duplicate or failed) is first
appended to a *progress journal* (`<out>.progress`, one JSON line, flushed and fsynced) that
holds the row itself; then the row is appended to `<out>`. On start the journal is read (a
partial last line from a kill is dropped), the rows file is repaired from it if it lags or has
a torn line, and only the missing indices run. Each index draws its persona, instruction and
sampling seeds from its own RNG `(seed, index)`, so a resumed run asks the same questions an
uninterrupted one would.
"""

from __future__ import annotations

import ast
import json
import os
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from harness.atomic import write_json, write_text
from harness.data.rows import TrainRow
from harness.data.synth.backends import LLMBackend
from harness.data.synth.prompts import (
    INSTRUCTION_MAX_CHARS,
    INSTRUCTION_MAX_WORDS,
    INSTRUCTION_MIN_WORDS,
    KINDS,
    FieldRule,
    brainstorm_messages,
    example_messages,
    templates,
    templates_hash,
)
from harness.errors import HarnessError
from harness.hashing import content_hash
from harness.paths import looks_like_path

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_MAX_JSON_STARTS = 64  # JSON start candidates tried per answer (bounds work on long garbage)


# ---------------------------------------------------------------- parsing and validation


def count_words(text: str) -> int:
    """Whitespace words, with each CJK character counted as one word (Chinese has no spaces)."""
    return len(_CJK.findall(text)) + len(_CJK.sub(" ", text).split())


def normalise(text: str) -> str:
    """The form used for de-duplication and equality checks: NFKC, case-folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _json_values(text: str, opener: str) -> list[Any]:
    """Every JSON value that starts at an `opener` character, in order.

    `raw_decode` at each candidate start handles code fences, leading prose and braces inside
    strings, which a regex cannot.
    """
    decoder = json.JSONDecoder()
    values = []
    for start, match in enumerate(re.finditer(re.escape(opener), text)):
        if start >= _MAX_JSON_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        values.append(value)
    return values


def _string_list(text: str) -> list[Any] | None:
    """The first list in an answer: JSON, or a Python literal (E5's prompts ask for a Python list)."""
    for value in _json_values(text, "["):
        if isinstance(value, list):
            return value
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        try:
            value = ast.literal_eval(text[start : end + 1])
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        if isinstance(value, list):
            return value
    return None


def instruction_problem(text: str) -> str | None:
    """Why one brainstormed instruction is unusable, or None."""
    if not text.strip():
        return "empty"
    if "\n" in text.strip():
        return "multiline"
    words = count_words(text)
    if words < INSTRUCTION_MIN_WORDS:
        return "too_short"
    if words > INSTRUCTION_MAX_WORDS or len(text) > INSTRUCTION_MAX_CHARS:
        return "too_long"
    return None


def check_instructions(text: str) -> tuple[list[str], str | None]:
    """Step 1: the usable instructions of a brainstorm answer, or a reason when there are none."""
    items = _string_list(text)
    if items is None:
        return [], "instruction:no_list"
    good = [item.strip() for item in items if isinstance(item, str) and instruction_problem(item) is None]
    if not good:
        return [], "instruction:none_valid"
    return list(dict.fromkeys(good)), None


def _field_problem(obj: dict[str, Any], rule: FieldRule) -> str | None:
    if rule.key not in obj:
        return f"missing:{rule.key}"
    value = obj[rule.key]
    if not isinstance(value, str):
        return f"wrong_type:{rule.key}"
    if not value.strip():
        return f"empty:{rule.key}"
    words = count_words(value)
    if words < rule.min_words:
        return f"too_short:{rule.key}"
    if words > rule.max_words:
        return f"too_long:{rule.key}"
    return None


def check_example(text: str, kind: str) -> tuple[dict[str, Any] | None, str | None]:
    """Step 2: `({"query", "pos", "neg"}, None)` for a valid answer, else `(None, reason)`."""
    if kind not in KINDS:
        raise HarnessError(f"synth kind {kind!r} is unknown; allowed: {', '.join(KINDS)}")
    spec = KINDS[kind]
    rules = [spec.query, spec.positive] + ([spec.negative] if spec.negative else [])
    objects = [v for v in _json_values(text, "{") if isinstance(v, dict)]
    if not objects:
        return None, "no_json"
    # Prefer an object that has the kind's keys (prose may contain an unrelated `{...}`).
    obj = next((o for o in objects if any(r.key in o for r in rules)), objects[0])
    for rule in rules:
        problem = _field_problem(obj, rule)
        if problem:
            return None, problem
    query, positive = obj[spec.query.key].strip(), obj[spec.positive.key].strip()
    if normalise(query) == normalise(positive):
        return None, "positive_equals_query"
    negatives = []
    if spec.negative:
        negative = obj[spec.negative.key].strip()
        if normalise(negative) == normalise(positive):
            return None, "negative_equals_positive"
        if normalise(negative) == normalise(query):
            return None, "negative_equals_query"
        negatives.append(negative)
    return {"query": query, "pos": [positive], "neg": negatives}, None


def parse_example(text: str, kind: str) -> dict[str, Any] | None:
    """The `{"query", "pos", "neg"}` of a valid LLM answer for `kind`, else None."""
    return check_example(text, kind)[0]


# ---------------------------------------------------------------- personas


def _personas_from_file(path: Path, column: str) -> list[str]:
    texts: list[str] = []
    json_lines = path.suffix in {".jsonl", ".json"}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if not json_lines:
                texts.append(line.strip())
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
            value = obj.get(column) if isinstance(obj, dict) else obj
            if not isinstance(value, str):
                raise HarnessError(f"{path}:{line_no}: expected {{{column!r}: <string>}} or a JSON string")
            texts.append(value)
    return texts


def _column(dataset: Any, column: str, where: str) -> list[str]:
    if column not in dataset.column_names:
        raise HarnessError(f"{where}: no column {column!r}; columns: {', '.join(dataset.column_names)}")
    return [str(v) for v in dataset[column] if v is not None]


def _personas_from_saved_dataset(path: Path, column: str) -> list[str]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise HarnessError(f"{path}: not a folder written by datasets' save_to_disk ({exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" in loaded:
            loaded = loaded["train"]
        elif len(loaded) == 1:
            loaded = next(iter(loaded.values()))
        else:
            raise HarnessError(f"{path}: several splits ({', '.join(loaded)}) and none is 'train'")
    return _column(loaded, column, str(path))


def _personas_from_hub(dataset_id: str, subset: str | None, column: str) -> list[str]:
    import datasets

    try:
        loaded = datasets.load_dataset(dataset_id, subset, split="train")
    except Exception as exc:  # datasets raises many types (offline, not found, bad config): report one way
        from harness.hub import datasets_offline

        hint = " The Hub is switched off (HF_*_OFFLINE=1): pass a local file or saved folder." if datasets_offline() else ""
        raise HarnessError(f"personas {dataset_id!r} (subset {subset!r}) could not be loaded: {exc}.{hint}") from None
    return _column(loaded, column, f"{dataset_id}:{subset}")


def load_personas(
    path_or_dataset: str,
    limit: int | None = None,
    seed: int = 0,
    *,
    subset: str | None = "persona",
    column: str = "persona",
) -> list[str]:
    """Personas from a text file (one per line), a JSON-lines file (`{"persona": ...}`), a folder
    saved with `datasets.save_to_disk`, or a Hub dataset id such as `proj-persona/PersonaHub`.

    Duplicates and blanks are dropped; the list is shuffled with `seed` and cut to `limit`, so a
    limited run uses a seeded sample rather than the head of the file.
    """
    path = Path(path_or_dataset).expanduser()
    if path.is_dir():
        texts = _personas_from_saved_dataset(path, column)
    elif path.is_file():
        texts = _personas_from_file(path, column)
    elif looks_like_path(path_or_dataset) or path.suffix in {".txt", ".jsonl", ".json"}:
        raise HarnessError(f"personas {path_or_dataset!r}: no such file or folder")
    else:
        texts = _personas_from_hub(path_or_dataset, subset, column)
    personas = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not personas:
        raise HarnessError(f"personas {path_or_dataset!r}: no non-empty persona found")
    random.Random(seed).shuffle(personas)
    return personas if limit is None else personas[:limit]


# ---------------------------------------------------------------- journal (resume)


def progress_path(out_path: Path) -> Path:
    """`<out>.progress`: not `*.jsonl`, so folder readers of training data never pick it up."""
    return out_path.with_name(out_path.name + ".progress")


def card_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".card.json")


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete records of the journal; a torn last line (killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    good_end = 0
    for line_no, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            break  # torn tail: the newline is the last byte of every record we write
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise HarnessError(f"{path}:{line_no}: corrupt progress record; delete the file to start over") from None
        good_end += len(line)
    if good_end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
    return records


def _append(handle: IO[str], obj: dict[str, Any], *, sync: bool) -> None:
    handle.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
    handle.flush()
    if sync:
        os.fsync(handle.fileno())


def _rows_text(records: list[dict[str, Any]]) -> str:
    rows = [r["row"] for r in records if r.get("type") == "example" and r["status"] == "ok"]
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)


def _start_journal(journal: Path, out_path: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Read (or create) the journal, check it belongs to this config, repair the rows file."""
    records = _read_journal(journal)
    if not records:
        if out_path.exists() and out_path.stat().st_size > 0:
            raise HarnessError(
                f"{out_path}: exists but has no progress file {journal.name}; refusing to append to rows "
                "of unknown origin: choose another output path or delete it"
            )
        journal.parent.mkdir(parents=True, exist_ok=True)
        with journal.open("w", encoding="utf-8") as handle:
            _append(handle, {"type": "header", "config": config}, sync=True)
        records = _read_journal(journal)
    header = records[0]
    if header.get("type") != "header":
        raise HarnessError(f"{journal}:1: not a synth progress file (no header record)")
    if header["config"] != config:
        changed = sorted(k for k in config.keys() | header["config"].keys() if header["config"].get(k) != config.get(k))
        raise HarnessError(
            f"{journal}: written by a different synthesis setup (changed: {', '.join(changed)}); resuming would "
            f"mix two setups: use another output path, or delete {out_path.name} and {journal.name}"
        )
    expected = _rows_text(records)
    current = out_path.read_text(encoding="utf-8") if out_path.exists() else None
    if current != expected:
        write_text(out_path, expected)  # the journal is the truth: drop torn lines, restore a lagging row
    return records


# ---------------------------------------------------------------- synthesis


def _one_example(
    backend: LLMBackend,
    *,
    index: int,
    kind: str,
    personas: Sequence[str],
    languages: Sequence[str],
    seed: int,
    max_retries: int,
    temperature: float,
    max_tokens: int,
    n_tasks: int,
) -> dict[str, Any]:
    """Brainstorm (persona as system prompt) then write one example; retry invalid answers."""
    rng = random.Random(f"synth:{seed}:{index}")
    persona_index = rng.randrange(len(personas))
    language = rng.choice(list(languages))
    record: dict[str, Any] = {
        "type": "example",
        "index": index,
        "kind": kind,
        "persona_index": persona_index,
        "language": language,
        "instruction": None,
        "invalid": [],
        "calls": 0,
    }
    invalid: list[str] = record["invalid"]
    while len(invalid) <= max_retries:
        call_seed = rng.getrandbits(31)
        record["calls"] += 1
        if record["instruction"] is None:
            messages = brainstorm_messages(kind, personas[persona_index], n_tasks)
            answer = backend.complete(messages, temperature=temperature, max_tokens=max_tokens, seed=call_seed)
            options, reason = check_instructions(answer)
            if reason:
                invalid.append(reason)
            else:
                record["instruction"] = rng.choice(options)
            continue
        messages = example_messages(kind, record["instruction"], language, rng)
        answer = backend.complete(messages, temperature=temperature, max_tokens=max_tokens, seed=call_seed)
        example, reason = check_example(answer, kind)
        if reason or example is None:
            invalid.append(reason or "invalid")
            continue
        row = TrainRow(
            query=example["query"],
            pos=example["pos"],
            neg=example["neg"],
            task=f"synth-{kind}",
            instruction=record["instruction"],
            source="synth",
        )
        record.update(status="ok", row=row.to_json(), key=content_hash([normalise(row.query), normalise(row.pos[0])]))
        return record
    record.update(status="failed", row=None, key=None)
    return record


def _card(
    records: list[dict[str, Any]], config: dict[str, Any], *, n_examples: int, complete: bool, extra: dict[str, Any]
) -> dict[str, Any]:
    """The data card, computed from the whole journal so counts add up across resumed runs."""
    examples = [r for r in records if r.get("type") == "example"]
    final = {r["index"]: r for r in examples}  # the latest record of each index
    status = Counter(r["status"] for r in final.values())
    reasons = Counter(reason for r in examples for reason in r["invalid"])
    kept = [r for r in final.values() if r["status"] == "ok"]
    return {
        "backend": config["backend"],
        "model": config["model"],
        "seed": config["seed"],
        "kinds": config["kinds"],
        "languages": config["languages"],
        "sampling": {"temperature": config["temperature"], "max_tokens": config["max_tokens"]},
        "prompts": templates(),
        "prompts_hash": config["prompts_hash"],
        "personas": {**extra["personas"], "hash": config["personas_hash"]},
        "files": extra["files"],
        "complete": complete,
        "counts": {
            "requested": n_examples,
            "done": len(final),
            "generated": status["ok"],
            "duplicates": status["duplicate"],
            "failed": status["failed"],
            "invalid": sum(reasons.values()),
            "invalid_by_reason": dict(sorted(reasons.items())),
            "retries": sum(len(r["invalid"]) - (r["status"] == "failed") for r in examples),
            "calls": sum(r["calls"] for r in examples),
            "unique_instructions": len({r["instruction"] for r in kept}),
            "generated_by_kind": dict(sorted(Counter(r["kind"] for r in kept).items())),
            "transport_retries_this_run": extra["transport_retries"],
        },
    }


def synthesize(
    backend: LLMBackend,
    personas: Sequence[str],
    *,
    n_examples: int,
    kinds: Sequence[str],
    out_path: str | Path,
    seed: int,
    max_retries: int = 2,
    show_progress: bool = True,
    languages: Sequence[str] = ("English",),
    temperature: float = 1.0,
    max_tokens: int = 1024,
    n_tasks: int = 10,
    personas_source: str | None = None,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Generate `n_examples` rows (example i has kind `kinds[i % len(kinds)]`) into `out_path`.

    Rows are `TrainRow` JSON lines (query, pos, neg, instruction, task=`synth-<kind>`). Resumes
    from `<out>.progress`; indices already done (and failed ones, unless `retry_failed`) are
    skipped. Returns the data card, also written to `<out>.card.json`. E5-mistral sampled at
    temperature 1.0 for diversity, hence the default.
    """
    from tqdm import tqdm

    out_path = Path(out_path)
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise HarnessError(f"synth kinds {unknown or kinds!r} not allowed; choose from: {', '.join(KINDS)}")
    if not personas:
        raise HarnessError("synth needs at least one persona")
    if not languages:
        raise HarnessError("synth needs at least one language")
    if n_examples < 0 or max_retries < 0:
        raise HarnessError("synth: n_examples and max_retries must be >= 0")
    config = {
        "backend": getattr(backend, "kind", type(backend).__name__),
        "model": backend.name,
        "kinds": kinds,
        "seed": seed,
        "languages": list(languages),
        "temperature": temperature,
        "max_tokens": max_tokens,
        "n_tasks": n_tasks,
        "prompts_hash": templates_hash(),
        "personas_hash": content_hash(list(personas)),
    }
    journal = progress_path(out_path)
    records = _start_journal(journal, out_path, config)
    final = {r["index"]: r for r in records if r.get("type") == "example"}
    seen = {r["key"] for r in final.values() if r["status"] == "ok"}
    todo = [i for i in range(n_examples) if i not in final or (retry_failed and final[i]["status"] == "failed")]
    extra = {
        "personas": {"source": personas_source, "count": len(personas)},
        "files": {"rows": str(out_path), "progress": str(journal)},
        "transport_retries": 0,
    }
    retries_before = getattr(backend, "http_retries", 0)
    complete = False
    try:
        with (
            journal.open("a", encoding="utf-8") as journal_file,
            out_path.open("a", encoding="utf-8") as rows_file,
            tqdm(total=n_examples, initial=n_examples - len(todo), disable=not show_progress, desc="synth") as bar,
        ):
            for index in todo:
                record = _one_example(
                    backend,
                    index=index,
                    kind=kinds[index % len(kinds)],
                    personas=personas,
                    languages=languages,
                    seed=seed,
                    max_retries=max_retries,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    n_tasks=n_tasks,
                )
                if record["status"] == "ok" and record["key"] in seen:
                    record.update(status="duplicate", row=None)
                # Journal first (fsynced), then the row: a kill in between is repaired on resume.
                _append(journal_file, record, sync=True)
                records.append(record)
                if record["status"] == "ok":
                    seen.add(record["key"])
                    _append(rows_file, record["row"], sync=False)
                bar.update(1)
        complete = True
    finally:
        extra["transport_retries"] = getattr(backend, "http_retries", 0) - retries_before
        card = _card(records, config, n_examples=n_examples, complete=complete, extra=extra)
        write_json(card_path(out_path), card)
    return card
