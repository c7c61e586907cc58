"""Schema-guided decoding: the output is forced to be JSON whose keys are exactly the record's schema chunk.

The constraint comes from the record itself: its task's ``output_schema`` over the instruction's ``schema``
list gives a JSON Schema, and lm-format-enforcer masks, token by token, everything that would leave it. That
removes the "F1 is 0 because the output is not JSON" failure (wrong template, a chatty model) at the price
of slower decoding. vLLM has guided decoding of its own (``predict/vllm.py``).

Why a small adapter of our own: lm-format-enforcer's transformers integration imports
``transformers.tokenization_utils``, which transformers 5 removed; the enforcer itself needs only the token
table built below.
"""

from __future__ import annotations

import json
from typing import Any

from ..io import DataError
from ..tasks import get_task

__all__ = ["output_schema_of", "GuidedDecoding"]


def output_schema_of(record: dict) -> dict:
    """The JSON Schema of a correct answer to one instruction record (its task and schema chunk)."""
    task = record.get("task")
    if not isinstance(task, str):
        raise DataError(None, None, "task", "guided decoding needs each record's task (convert with deepke-llm convert)")
    instruction = json.loads(record["instruction"])
    return get_task(task).output_schema(instruction.get("schema", []))


def _token_table(tokenizer: Any, stop_ids: list[int]):
    """lm-format-enforcer's per-tokenizer data: each regular token's text and whether it starts a word."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    regular = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        after_zero = tokenizer.decode([zero, token_id])[1:]
        regular.append((token_id, after_zero, len(after_zero) > len(tokenizer.decode([token_id]))))

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(regular, decode, stop_ids, False, len(tokenizer))


class GuidedDecoding:
    """Builds, per batch, a ``prefix_allowed_tokens_fn`` that enforces each row's own JSON Schema."""

    def __init__(self, tokenizer: Any, stop_ids: list[int]):
        import importlib.util

        if importlib.util.find_spec("lmformatenforcer") is None:
            raise ImportError("--guided needs lm-format-enforcer: pip install lm-format-enforcer")
        self.table = _token_table(tokenizer, stop_ids)

    def allowed_tokens_fn(self, schemas: list[dict]):
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        enforcers = [TokenEnforcer(self.table, JsonSchemaParser(schema)) for schema in schemas]

        def allowed(batch_id: int, sequence) -> list[int]:
            return enforcers[batch_id].get_allowed_tokens(sequence.tolist()).allowed_tokens

        return allowed
