"""Prompt templates for persona-based synthesis, after E5-mistral (Wang et al. 2024, appendix C).

Two steps per example, as in KaLM: (1) *brainstorm* a list of task instructions, with a random
persona as the system prompt (the only place the persona appears), then (2) write one JSON
example for one of those instructions, without the persona. KaLM did not publish its prompts;
these follow the structure of E5-mistral's templates (same keys, guidelines and placeholder
values) in our own words. Six kinds: the four E5 retrieval shapes, classification, and STS.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.data.synth.backends import Messages
from harness.hashing import content_hash

PERSONA_SYSTEM = (
    "You are the person described below. Let their background, interests and expertise shape "
    "your ideas.\n{persona}"
)

_LIST_TAIL = (
    "Your output must be a JSON list of strings only, with about {n_tasks} elements; each element is "
    "one distinct task described in one sentence. Do not explain yourself or output anything else. "
    "Be creative!"
)
_JSON_TAIL = "Your output must be the JSON object only; do not explain yourself or output anything else. Be creative!"

BRAINSTORM = {
    "short-long": (
        "Brainstorm a list of useful text retrieval tasks in which a short query is used to find "
        "longer documents.\n"
        "Examples for reference:\n"
        "- Given a short keyword web search query about the weather, retrieve documents that answer it.\n"
        "- Given a frequently asked question about children's nutrition, retrieve articles that answer it.\n"
        "Guidelines:\n"
        "- Say what the query is and what the desired documents are.\n"
        "- Each task should cover a wide range of queries, not one narrow question.\n" + _LIST_TAIL
    ),
    "long-short": (
        "Brainstorm a list of useful text matching tasks in which the input is a long text (a "
        "paragraph or more) and the target is a short text such as a title, a summary sentence, a "
        "keyword or a question.\n"
        "Examples for reference:\n"
        "- Given a news article, retrieve its headline.\n"
        "- Given a customer review, retrieve the short product question it answers best.\n"
        "Guidelines:\n"
        "- Say what the long input is and what the short target is.\n"
        "- Each task should cover a wide range of inputs, not one narrow topic.\n" + _LIST_TAIL
    ),
    "short-short": (
        "Brainstorm a list of text matching tasks in which both the queries and the matching texts "
        "are very short (one or two sentences, or even a phrase).\n"
        "Examples for reference:\n"
        "- Given the title of a scientific paper, retrieve the titles of papers that cite it.\n"
        "- Match a word with its definition.\n"
        "- Given a notable person's name, identify their occupation or achievement.\n" + _LIST_TAIL
    ),
    "long-long": (
        "Brainstorm a list of text matching tasks in which both the queries and the matching texts "
        "are long documents.\n"
        "Examples for reference:\n"
        "- Given a document arguing one side of a debate, retrieve a document arguing the other side.\n"
        "- Given a lengthy business proposal, retrieve competing business strategies in the same industry.\n"
        + _LIST_TAIL
    ),
    "classification": (
        "Brainstorm a list of useful text classification tasks.\n"
        "Guidelines:\n"
        "- The tasks should cover a diverse range of domains and task types.\n"
        "- Say what the input text is and what the labels are; labels should be clear and concrete, "
        "not abstract.\n" + _LIST_TAIL
    ),
    "sts": (
        "Brainstorm a list of semantic similarity tasks: each names a kind of short text (sentences, "
        "phrases or passages) in some domain, for which finding texts with the same meaning is useful.\n"
        "Examples for reference:\n"
        "- Retrieve sentences that paraphrase a customer's complaint about a late delivery.\n"
        "- Retrieve passages of course notes that restate a given definition in other words.\n"
        + _LIST_TAIL
    ),
}

EXAMPLE = {
    "short-long": (
        "You have been assigned a retrieval task: {instruction}\n"
        "Your mission is to write one text retrieval example for this task as a JSON object with these keys:\n"
        '- "user_query": a string, a random user search query for this task.\n'
        '- "positive_document": a string, a document relevant to the user query.\n'
        '- "hard_negative_document": a string, a hard negative document that only appears relevant to the query.\n'
        "Guidelines:\n"
        '- The "user_query" is {query_type}, {query_length}, {clarity}, and diverse in topic.\n'
        "- Write the documents independently of the query and do not copy the query into them. Parts of "
        'the "positive_document" may be off-topic.\n'
        "- Every document is at least {num_words} words long.\n"
        '- The "hard_negative_document" holds some useful information, but it is less useful or less '
        'complete than the "positive_document".\n'
        "- The query and the documents are in {language}.\n"
        "- No document explains why it is or is not relevant to the query.\n"
        "- Understanding the query and the documents needs {difficulty} level education.\n" + _JSON_TAIL
    ),
    "long-short": (
        "You have been assigned a text matching task: {instruction}\n"
        "Your mission is to write one example for this task as a JSON object with these keys:\n"
        '- "input_text": a string, a long input text for this task.\n'
        '- "positive_document": a string, the short text that matches the input according to the task.\n'
        '- "hard_negative_document": a string, a short text that looks like a match but fits the input '
        "less well.\n"
        "Guidelines:\n"
        '- The "input_text" is at least {num_words} words long, {clarity}, and diverse in topic.\n'
        '- The "positive_document" and "hard_negative_document" are each {target_length}.\n'
        '- Do not copy sentences of the "input_text" into the other texts.\n'
        "- All texts are in {language}.\n"
        "- Understanding the texts needs {difficulty} level education.\n" + _JSON_TAIL
    ),
    "short-short": (
        "You have been assigned a text matching task: {instruction}\n"
        "Your mission is to write one example for this task as a JSON object with these keys:\n"
        '- "input": a string, a random input for this task.\n'
        '- "positive_document": a string, the text that matches the "input" according to the task.\n'
        "Guidelines:\n"
        "- The values of all fields are in {language}.\n"
        '- Both the "input" and the "positive_document" are very short (a sentence or a phrase); avoid '
        "substantial word overlap, which would make the task too easy.\n"
        '- The "input" and the "positive_document" are written independently of each other.\n' + _JSON_TAIL
    ),
    "long-long": (
        "You have been assigned a text matching task: {instruction}\n"
        "Your mission is to write one example for this task as a JSON object with these keys:\n"
        '- "input": a string, a random input document for this task.\n'
        '- "positive_document": a string, the document that matches the "input" according to the task.\n'
        "Guidelines:\n"
        "- The values of all fields are in {language}.\n"
        '- Both the "input" and the "positive_document" are long documents (at least {num_words} words); '
        "avoid substantial word overlap, which would make the task too easy.\n"
        '- The "input" and the "positive_document" are written independently of each other.\n' + _JSON_TAIL
    ),
    "classification": (
        "You have been assigned a text classification task: {instruction}\n"
        "Your mission is to write one text classification example for this task as a JSON object with these keys:\n"
        '- "input_text": a string, the input text for this classification task.\n'
        '- "label": a string, the correct label of the input text.\n'
        '- "misleading_label": a string, an incorrect label that is related to the task.\n'
        "Guidelines:\n"
        '- The "input_text" is {num_words} words and diverse in expression.\n'
        '- The "misleading_label" is a valid label for the task, but less appropriate than the "label" '
        'for the "input_text".\n'
        "- The values of all fields are in {language}.\n"
        '- Do not put the values of "label" or "misleading_label" in the "input_text"; that would make '
        "the task too easy.\n"
        '- The "input_text" is {clarity} and needs {difficulty} level education to understand.\n' + _JSON_TAIL
    ),
    "sts": (
        "You have been assigned a semantic similarity task: {instruction}\n"
        "Write a {unit} triple for this task with varying semantic similarity scores, as a JSON object. "
        "Similarity scores range from 1 (least similar) to 5 (most similar).\n"
        "Guidelines:\n"
        '- The keys are "S1", "S2" and "S3"; the values are strings in {language}; add no other keys.\n'
        "- All three texts share some words.\n"
        "- The similarity score between S1 and S2 is {high_score}.\n"
        "- The similarity score between S1 and S3 is {low_score}.\n"
        "- The texts need {difficulty} level education to understand and vary in topic and length.\n"
        + _JSON_TAIL
    ),
}

# Placeholder values: E5-mistral's lists (tables 7-12) where E5 has the kind; ours otherwise.
_CLARITY = ["clear", "understandable with some effort", "ambiguous"]
_DIFFICULTY = ["high school", "college", "PhD"]
PLACEHOLDERS: dict[str, dict[str, list[str]]] = {
    "short-long": {
        "query_type": ["extremely long-tail", "long-tail", "common"],
        "query_length": ["less than 5 words", "5 to 15 words", "at least 10 words"],
        "clarity": _CLARITY,
        "num_words": ["50", "100", "200", "300", "400", "500"],
        "difficulty": _DIFFICULTY,
    },
    "long-short": {
        "num_words": ["50", "100", "200", "300"],
        "target_length": ["a phrase", "one sentence", "less than 30 words"],
        "clarity": _CLARITY,
        "difficulty": _DIFFICULTY,
    },
    "short-short": {},
    "long-long": {"num_words": ["100", "200", "300"]},
    "classification": {
        "num_words": ["less than 10", "at least 10", "at least 50", "at least 100", "at least 200"],
        "clarity": _CLARITY,
        "difficulty": _DIFFICULTY,
    },
    "sts": {
        "unit": ["sentence", "phrase", "passage"],
        "high_score": ["4", "4.5", "5"],
        "low_score": ["2.5", "3", "3.5"],
        "difficulty": _DIFFICULTY,
    },
}


@dataclass(frozen=True)
class FieldRule:
    """One JSON key of an example and its allowed length in words (CJK characters count as words)."""

    key: str
    min_words: int = 1
    max_words: int = 2000


@dataclass(frozen=True)
class KindSpec:
    """How a kind's JSON answer maps to a training row: query, positive, optional hard negative."""

    query: FieldRule
    positive: FieldRule
    negative: FieldRule | None = None


SHORT = 64  # words: upper bound of a "short" text
LONG = 20  # words: lower bound of a "long" text (lenient: E5 asks for 50+, models fall short)
KINDS: dict[str, KindSpec] = {
    "short-long": KindSpec(
        FieldRule("user_query", 1, SHORT), FieldRule("positive_document", LONG), FieldRule("hard_negative_document", LONG)
    ),
    "long-short": KindSpec(
        FieldRule("input_text", LONG),
        FieldRule("positive_document", 1, SHORT),
        FieldRule("hard_negative_document", 1, SHORT),
    ),
    "short-short": KindSpec(FieldRule("input", 1, SHORT), FieldRule("positive_document", 1, SHORT)),
    "long-long": KindSpec(FieldRule("input", LONG), FieldRule("positive_document", LONG)),
    "classification": KindSpec(
        FieldRule("input_text", 1), FieldRule("label", 1, 12), FieldRule("misleading_label", 1, 12)
    ),
    "sts": KindSpec(FieldRule("S1", 1, 400), FieldRule("S2", 1, 400), FieldRule("S3", 1, 400)),
}
ALL_KINDS = tuple(KINDS)

INSTRUCTION_MIN_WORDS = 3
INSTRUCTION_MAX_WORDS = 60
INSTRUCTION_MAX_CHARS = 400


def templates() -> dict[str, object]:
    """Every template text, for the data card and its hash."""
    return {
        "persona_system": PERSONA_SYSTEM,
        "brainstorm": BRAINSTORM,
        "example": EXAMPLE,
        "placeholders": PLACEHOLDERS,
    }


def templates_hash() -> str:
    return content_hash(templates())


def brainstorm_messages(kind: str, persona: str, n_tasks: int = 10) -> Messages:
    """Step 1: the persona is the system prompt."""
    return [
        {"role": "system", "content": PERSONA_SYSTEM.format(persona=persona)},
        {"role": "user", "content": BRAINSTORM[kind].format(n_tasks=n_tasks)},
    ]


def example_messages(kind: str, instruction: str, language: str, rng: random.Random) -> Messages:
    """Step 2: no persona; placeholders drawn from `rng` (E5's diversity knobs)."""
    values = {name: rng.choice(options) for name, options in sorted(PLACEHOLDERS[kind].items())}
    return [{"role": "user", "content": EXAMPLE[kind].format(instruction=instruction, language=language, **values)}]
