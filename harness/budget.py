"""How much of the query length the instruction template leaves for the query itself.

KaLM prepends `Instruct: {task} \\n Query: ` to every query. A long task description (the
column-matching one is ~30 Qwen tokens) at a short `query_max_length` silently truncates the query
to a couple of tokens. The data card and the eval log say so when fewer than MIN_QUERY_TOKENS remain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.config import ModelConfig
from harness.model import MIN_QUERY_TOKENS, instruction_budget_warning, query_tokens_left


def instruction_budget(model: ModelConfig, instruction_rows: Mapping[str, int]) -> dict[str, Any]:
    """Per distinct training instruction: rows carrying it and query tokens left; warnings if short."""
    if not model.instructions or not instruction_rows:
        return {"query_max_length": model.query_max_length, "instructions": [], "warnings": []}
    from harness.backbones import resolve_path
    from harness.backbones.tokenizer_cache import load_tokenizer_from

    tokenizer = load_tokenizer_from(resolve_path(model.backbone), trust_remote_code=model.trust_remote_code)
    entries, warnings = [], []
    for instruction, rows in sorted(instruction_rows.items()):
        left = query_tokens_left(tokenizer, model.instruction_template, instruction, model.query_max_length)
        entries.append({"instruction": instruction, "rows": rows, "query_tokens_left": left})
        warning = instruction_budget_warning(left, instruction, model.query_max_length,
                                             f"{rows} training row(s)")
        if warning:
            warnings.append(warning)
    return {"query_max_length": model.query_max_length, "min_query_tokens": MIN_QUERY_TOKENS,
            "instructions": entries, "warnings": warnings}
