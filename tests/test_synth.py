"""Persona-based synthesis: answer parsing, personas, both backends, de-duplication and resume."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.data.rows import load_rows, read_flag_jsonl
from harness.data.synth import (
    ALL_KINDS,
    OpenAICompatibleBackend,
    TransformersBackend,
    card_path,
    check_example,
    check_instructions,
    load_personas,
    parse_example,
    progress_path,
    synthesize,
)
from harness.data.synth.generate import count_words
from harness.data.synth.prompts import KINDS, brainstorm_messages, example_messages
from harness.errors import HarnessError
from .conftest import write

LONG_A = "Fresh tomato sauce needs ripe tomatoes, garlic, olive oil and a slow simmer of about forty minutes to reach depth."
LONG_B = "Canned tomatoes can stand in for fresh ones in winter, though the sauce tastes flatter unless you add a little sugar."
VALID_SHORT_LONG = json.dumps(
    {"user_query": "how long to simmer tomato sauce", "positive_document": LONG_A, "hard_negative_document": LONG_B}
)


# ------------------------------------------------------------------ parsing


def test_parse_valid_fenced_and_prose() -> None:
    expected = {"query": "how long to simmer tomato sauce", "pos": [LONG_A], "neg": [LONG_B]}
    assert parse_example(VALID_SHORT_LONG, "short-long") == expected
    assert parse_example(f"```json\n{VALID_SHORT_LONG}\n```", "short-long") == expected
    prose = f'Sure! Ignore {{"note": 1}} this.\nHere is the example:\n{VALID_SHORT_LONG}\nHope it helps {{'
    assert parse_example(prose, "short-long") == expected
    braces = json.dumps({"input": "what does {x} mean", "positive_document": "a placeholder in a template"})
    assert parse_example(braces, "short-short") == {
        "query": "what does {x} mean",
        "pos": ["a placeholder in a template"],
        "neg": [],
    }
    sts = json.dumps({"S1": "The cat sleeps.", "S2": "A cat is sleeping.", "S3": "The cat eats."})
    assert parse_example(sts, "sts") == {"query": "The cat sleeps.", "pos": ["A cat is sleeping."], "neg": ["The cat eats."]}
    label = json.dumps({"input_text": "The food was cold.", "label": "negative", "misleading_label": "neutral"})
    assert parse_example(label, "classification") == {"query": "The food was cold.", "pos": ["negative"], "neg": ["neutral"]}


@pytest.mark.parametrize(
    ("kind", "text", "reason"),
    [
        ("short-long", '{"user_query": "q", "positive_document": "' + LONG_A + '"}', "missing:hard_negative_document"),
        ("short-short", '{"input": "q", "positive_document": ["a", "list"]}', "wrong_type:positive_document"),
        ("short-short", '{"input": "q", "positive_document": 7}', "wrong_type:positive_document"),
        ("short-short", '{"input": "   ", "positive_document": "an answer"}', "empty:input"),
        ("short-short", '{"input": "Tomato  Sauce", "positive_document": "tomato sauce"}', "positive_equals_query"),
        ("short-long", VALID_SHORT_LONG[:-40], "no_json"),
        ("short-long", "I am sorry, I cannot write that.", "no_json"),
        ("short-long", '{"user_query": "q", "positive_document": "too short", "hard_negative_document": "x"}',
         "too_short:positive_document"),
        ("classification", json.dumps({"input_text": "t", "label": " ".join(["word"] * 13), "misleading_label": "b"}),
         "too_long:label"),
        ("sts", '{"S1": "same text", "S2": "other text", "S3": "Other  text"}', "negative_equals_positive"),
        ("sts", "[1, 2, 3]", "no_json"),
    ],
)
def test_parse_rejects(kind: str, text: str, reason: str) -> None:
    assert check_example(text, kind) == (None, reason)
    assert parse_example(text, kind) is None


def test_unknown_kind_and_word_count() -> None:
    with pytest.raises(HarnessError, match="allowed"):
        parse_example("{}", "poetry")
    assert count_words("我爱北京 and Paris") == 6


def test_check_instructions() -> None:
    good = ["Retrieve recipes that answer a cooking question.", "Find reviews of a given restaurant."]
    assert check_instructions(json.dumps(good)) == (good, None)
    assert check_instructions("Here you go:\n```python\n" + repr(good) + "\n```") == (good, None)
    assert check_instructions("No list here.") == ([], "instruction:no_list")
    assert check_instructions('["", 3, "two words", "line one\\nline two of it"]') == ([], "instruction:none_valid")
    assert check_instructions(json.dumps(["x " * 80, good[0]])) == ([good[0]], None)


def test_every_kind_has_prompts_that_format() -> None:
    assert set(ALL_KINDS) >= {"short-long", "long-short", "short-short", "long-long", "classification", "sts"}
    for kind in KINDS:
        step1 = brainstorm_messages(kind, "A beekeeper in Tuscany")
        assert step1[0] == {"role": "system", "content": step1[0]["content"]} and "beekeeper" in step1[0]["content"]
        step2 = example_messages(kind, "Match a word with its definition.", "English", random.Random(0))
        assert [m["role"] for m in step2] == ["user"]
        assert "{" not in step2[0]["content"].replace('{"', "")  # every placeholder was filled


# ------------------------------------------------------------------ personas


def test_load_personas_text_and_jsonl(tmp_path: Path) -> None:
    text = tmp_path / "personas.txt"
    text.write_text("A nurse\n\nA pilot\nA nurse\nA chef\n", encoding="utf-8")
    personas = load_personas(str(text), None, seed=1)
    assert sorted(personas) == ["A chef", "A nurse", "A pilot"]
    assert load_personas(str(text), None, seed=1) == personas
    assert load_personas(str(text), 2, seed=1) == personas[:2]
    lines = tmp_path / "personas.jsonl"
    lines.write_text('{"persona": "A poet", "id": 1}\n{"persona": "A baker"}\n', encoding="utf-8")
    assert sorted(load_personas(str(lines), None, seed=0)) == ["A baker", "A poet"]
    lines.write_text('{"persona": "A poet"}\n{"name": "x"}\n', encoding="utf-8")
    with pytest.raises(HarnessError, match=r"personas.jsonl:2"):
        load_personas(str(lines), None, seed=0)
    with pytest.raises(HarnessError, match="no such file"):
        load_personas(str(tmp_path / "missing.txt"), None, seed=0)


def test_load_personas_saved_dataset(tmp_path: Path) -> None:
    import datasets

    table = {"persona": [f"A person who studies topic {i}" for i in range(5)], "id": list(range(5))}
    datasets.Dataset.from_dict(table).save_to_disk(str(tmp_path / "plain"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(table)}).save_to_disk(str(tmp_path / "split"))
    plain = load_personas(str(tmp_path / "plain"), 3, seed=7)
    assert len(plain) == 3 and set(plain) <= set(table["persona"])
    assert load_personas(str(tmp_path / "split"), 3, seed=7) == plain
    with pytest.raises(HarnessError, match="no column 'text'"):
        load_personas(str(tmp_path / "plain"), None, seed=0, column="text")


def test_load_personas_hub_id_offline() -> None:
    with pytest.raises(HarnessError, match="proj-persona/PersonaHub.*switched off"):
        load_personas("proj-persona/PersonaHub", 10, seed=0)


# ------------------------------------------------------------------ HTTP backend


Responder = Callable[[dict[str, Any]], tuple[int, str]]


@contextmanager
def chat_server(respond: Responder) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 answering chat completions with `respond(body)`."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path == "/v1/chat/completions"
            bodies.append(body)
            status, content = respond(body)
            payload = json.dumps(
                {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                if status == 200
                else {"error": content}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def is_brainstorm(body: dict[str, Any]) -> bool:
    return body["messages"][0]["role"] == "system"


PERSONAS = ["A marine biologist who writes for children", "A retired train driver from Lyon"]


def test_http_synthesize_dedup_retries_and_card(tmp_path: Path) -> None:
    sts = json.dumps({"S1": "The train left at noon.", "S2": "At midday the train departed.", "S3": "The train was red."})
    step1 = [
        '["Retrieve recipes that answer a short cooking question."]',
        "I cannot think of any tasks.",  # no list: retried
        '["Retrieve sentences that paraphrase a railway announcement."]',
        '["Retrieve recipes that answer a short cooking question."]',
        '["Retrieve sentences that paraphrase a railway announcement."]',
    ]
    step2 = [
        "Sure! Here is one:",  # no JSON: retried
        f"```json\n{VALID_SHORT_LONG}\n```",
        sts,
        VALID_SHORT_LONG.replace("how long", "How  long"),  # the same example again: a duplicate
        "not json at all",
        '{"S1": "only one"}',
        sts[:-20],  # truncated
    ]
    first_call = [True]

    def respond(body: dict[str, Any]) -> tuple[int, str]:
        if first_call[0]:  # a transient server error: retried by the backend, not counted as invalid
            first_call[0] = False
            return 503, "warming up"
        return 200, (step1 if is_brainstorm(body) else step2).pop(0)

    out = tmp_path / "synth" / "rows.jsonl"
    with chat_server(respond) as (url, bodies):
        backend = OpenAICompatibleBackend(url, "canned-model", api_key="k", backoff_seconds=0.01)
        card = synthesize(
            backend, PERSONAS, n_examples=4, kinds=["short-long", "sts"], out_path=out, seed=3,
            max_retries=2, show_progress=False, max_tokens=256, personas_source="inline",
        )
    assert step1 == [] and step2 == []
    rows = load_rows(out)
    assert [(r.task, r.query) for r in rows] == [
        ("synth-short-long", "how long to simmer tomato sauce"),
        ("synth-sts", "The train left at noon."),
    ]
    assert rows[0].pos == [LONG_A] and rows[0].neg == [LONG_B]
    assert rows[0].instruction == "Retrieve recipes that answer a short cooking question."
    assert rows[1].pos == ["At midday the train departed."] and rows[1].neg == ["The train was red."]
    # Also a FlagEmbedding source, whose rows keep their per-kind task label.
    assert [r.task for r in read_flag_jsonl(out)] == ["synth-short-long", "synth-sts"]

    counts = card["counts"]
    assert counts["requested"] == 4 and counts["generated"] == 2
    assert counts["duplicates"] == 1 and counts["failed"] == 1
    assert counts["invalid_by_reason"] == {"instruction:no_list": 1, "no_json": 3, "missing:S2": 1}
    assert counts["invalid"] == 5 and counts["retries"] == 4
    assert counts["calls"] == 12 == len(bodies) - 1  # the 503 was retried by the transport
    assert counts["transport_retries_this_run"] == 1
    assert card["complete"] and card["model"] == "canned-model" and card["backend"] == "openai-compatible"
    assert card["personas"]["source"] == "inline" and len(card["prompts_hash"]) == 12
    assert json.loads(card_path(out).read_text()) == card

    answered = bodies[1:]
    for body in answered:
        assert body["model"] == "canned-model" and body["max_tokens"] == 256 and isinstance(body["seed"], int)
        text = json.dumps(body)
        if is_brainstorm(body):
            assert any(p in body["messages"][0]["content"] for p in PERSONAS)
        else:
            assert [m["role"] for m in body["messages"]] == ["user"]
            assert not any(p in text for p in PERSONAS)
    assert sum(is_brainstorm(b) for b in answered) == 5


def test_http_client_errors_fail_at_once(tmp_path: Path) -> None:
    with chat_server(lambda body: (404, "no such model")) as (url, bodies):
        backend = OpenAICompatibleBackend(url + "/v1/", "missing", backoff_seconds=0.01)
        with pytest.raises(HarnessError, match="HTTP 404"):
            backend.complete([{"role": "user", "content": "hi"}], temperature=0, max_tokens=5, seed=0)
    assert len(bodies) == 1


def seeded_server(budget: dict[str, int | None]) -> Responder:
    """Answers that depend only on the request, so a resumed run can match an uninterrupted one.

    With `budget["left"]` set, the server answers that many requests, then fails with 500s.
    """

    def respond(body: dict[str, Any]) -> tuple[int, str]:
        left = budget["left"]
        if left is not None:
            if left <= 0:
                return 500, "server went away"
            budget["left"] = left - 1
        if is_brainstorm(body):
            return 200, json.dumps([f"Match a short phrase with its synonym, variant {body['seed'] % 3}."])
        return 200, json.dumps({"input": f"phrase {body['seed']}", "positive_document": f"synonym {body['seed']}",
                                "input_text": f"text {body['seed']}", "label": "yes", "misleading_label": "no"})

    return respond


def test_resume_after_interruption(tmp_path: Path) -> None:
    options = {"n_examples": 6, "kinds": ["short-short", "classification"], "seed": 11, "show_progress": False}
    budget: dict[str, int | None] = {"left": None}
    with chat_server(seeded_server(budget)) as (url, bodies):
        backend = OpenAICompatibleBackend(url, "canned", max_attempts=2, backoff_seconds=0.01)
        reference = synthesize(backend, PERSONAS, out_path=tmp_path / "straight.jsonl", **options)
        assert reference["counts"]["generated"] == 6

        out = tmp_path / "resumed.jsonl"
        budget["left"] = 6  # 3 examples x (brainstorm + example), then the server dies
        with pytest.raises(HarnessError, match="no answer after 2 attempts"):
            synthesize(backend, PERSONAS, out_path=out, **options)
        assert len(load_rows(out)) == 3
        assert not json.loads(card_path(out).read_text())["complete"]

        # A kill mid-write: the journal recorded example 2 but its row line was torn off.
        lines = out.read_text().splitlines(keepends=True)
        out.write_text("".join(lines[:2]) + lines[2][:25])
        with progress_path(out).open("a") as journal:
            journal.write('{"type": "example", "ind')

        with pytest.raises(HarnessError, match="changed: kinds"):
            synthesize(backend, PERSONAS, out_path=out, **{**options, "kinds": ["short-short"]})

        budget["left"] = None
        before = len(bodies)
        card = synthesize(backend, PERSONAS, out_path=out, **options)
        assert len(bodies) - before == 6  # only examples 3, 4, 5 were generated again
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and len({(r["query"], r["pos"][0]) for r in rows}) == 6
    assert out.read_text() == (tmp_path / "straight.jsonl").read_text()
    assert card["complete"] and card["counts"]["generated"] == 6 and card["counts"]["done"] == 6
    assert card["counts"]["generated_by_kind"] == {"classification": 3, "short-short": 3}
    assert card["counts"]["transport_retries_this_run"] == 0

    again = synthesize(backend, PERSONAS, out_path=out, **options)  # nothing left to do: no server needed
    assert again["counts"] == card["counts"]


# ------------------------------------------------------------------ local backend


@pytest.mark.slow
def test_tiny_qwen2_nonsense_is_rejected_and_counted(tmp_path: Path) -> None:
    backend = TransformersBackend("tiny-qwen2")
    messages = [{"role": "user", "content": "Say something."}]
    first = backend.complete(messages, temperature=1.0, max_tokens=6, seed=5)
    assert backend.complete(messages, temperature=1.0, max_tokens=6, seed=5) == first  # seeded sampling

    out = tmp_path / "tiny.jsonl"
    card = synthesize(
        backend, PERSONAS, n_examples=2, kinds=["short-long", "classification"], out_path=out, seed=0,
        max_retries=1, show_progress=False, max_tokens=8,
    )
    counts = card["counts"]
    assert out.read_text() == ""
    assert counts["generated"] == 0 and counts["failed"] == 2
    assert counts["invalid"] == counts["calls"] == 4
    assert card["backend"] == "transformers" and card["model"] == "tiny-qwen2"


def test_synth_source_in_a_data_mix_is_generated_once_and_cached(tmp_path: Path, fresh_cache: Path) -> None:
    """A recipe's `kind: synth` source goes through the same generator, into the stage cache."""
    from harness.config import DataConfig
    from harness.data.mix import build_mix

    personas = write(tmp_path / "personas.txt", "\n".join(PERSONAS) + "\n")
    with chat_server(seeded_server({"left": None})) as (url, bodies):
        config = DataConfig.model_validate({"sources": {"synthetic": {"kind": "synth", "synth": {
            "backend": "openai", "base_url": url, "model": "served-model", "personas": str(personas),
            "n_examples": 4, "kinds": ["short-short"], "seed": 5}}}})
        rows, card = build_mix(config)
        calls = len(bodies)
        again, _ = build_mix(config)
        assert len(bodies) == calls  # second build reads the cached generation
    assert len(rows) == 4 and card["sources"]["synthetic"]["rows_per_task"] == {"synth-short-short": 4}
    synth = card["sources"]["synthetic"]["synth"]
    assert synth["model"] == "served-model" and synth["seed"] == 5 and synth["counts"]["generated"] == 4
    assert all(r.instruction and r.pos for r in rows)
    assert [r.to_json() for r in again] == [r.to_json() for r in rows]
    assert len(list((fresh_cache / "synth").iterdir())) == 1


def test_data_synth_command_writes_rows_and_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    personas = write(tmp_path / "personas.txt", "\n".join(PERSONAS) + "\n")
    out = tmp_path / "synth.jsonl"
    with chat_server(seeded_server({"left": None})) as (url, _):
        code = main(["data", "synth", "--model", "served", "--base-url", url, "--personas", str(personas),
                     "-n", "3", "--kinds", "short-short", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "generated 3" in capsys.readouterr().out
    assert len(read_flag_jsonl(out)) == 3 and (tmp_path / "synth.jsonl.card.json").is_file()
