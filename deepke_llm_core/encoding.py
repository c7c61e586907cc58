"""Prompt and answer -> token ids, the same way in training and in prediction.

Prompt and answer are tokenized separately and concatenated (as upstream's templates did segment by segment),
so the boundary between what the model reads and what it must write is exact: the loss masks the prompt
tokens, and generation starts where training's answers started. A prompt longer than its budget is fitted by
shortening the *input text* inside the IEPile instruction, never its instruction sentence or schema, and never
by cutting the end of the prompt (upstream cut the assistant marker off long prompts at inference).
"""

from __future__ import annotations

import json
from typing import Any

from .prompts import format_example, format_prompt

__all__ = ["tokenize_example", "encode_prompt", "encode"]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text; BOS/EOS are already in the text, so no special tokens are added."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _shorten_input(record: dict, budget: int, encode, decode, render) -> tuple[dict, bool]:
    """Cut the ``input`` text inside an IEPile instruction until the prompt fits ``budget`` tokens.

    Only the text is shortened, never the instruction sentence or the schema (the model must still see what
    to extract). Records whose instruction is not IEPile JSON are returned unchanged.
    """
    try:
        inner = json.loads(record["instruction"])
    except json.JSONDecodeError:
        return record, False
    if not isinstance(inner, dict) or not isinstance(inner.get("input"), str):
        return record, False
    text_ids = encode(inner["input"])
    for _ in range(8):
        overflow = len(encode(render(record))) - budget
        if overflow <= 0:
            return record, True
        text_ids = text_ids[: max(len(text_ids) - overflow, 0)]
        inner = {**inner, "input": decode(text_ids)}
        record = {**record, "instruction": json.dumps(inner, ensure_ascii=False)}
    return record, True


def _fit(record: dict, tokenizer: Any, render, budget: int) -> tuple[list[int], bool]:
    ids = encode(tokenizer, render(record))
    if len(ids) <= budget:
        return ids, False
    fitted, shortened = _shorten_input(record, budget, lambda t: encode(tokenizer, t),
                                       lambda ids: tokenizer.decode(ids, skip_special_tokens=True), render)
    return encode(tokenizer, render(fitted)), shortened


def encode_prompt(record: dict, tokenizer: Any, template: str, system: str | None, budget: int) -> tuple[list[int], bool]:
    """Prompt ids for generation, fitted to ``budget`` tokens; and whether the input text was shortened."""
    return _fit(record, tokenizer, lambda r: format_prompt(r, template, tokenizer=tokenizer, system=system), budget)


def tokenize_example(record: dict, tokenizer: Any, template: str, system: str | None, max_source_length: int) -> tuple[dict, bool]:
    """``input_ids`` and ``labels`` (prompt masked with -100), and whether the input had to be shortened."""
    prompt_ids, shortened = _fit(record, tokenizer,
                                 lambda r: format_example(r, template, tokenizer=tokenizer, system=system)[0], max_source_length)
    response_ids = encode(tokenizer, format_example(record, template, tokenizer=tokenizer, system=system)[1])
    return {"input_ids": prompt_ids + response_ids, "labels": [-100] * len(prompt_ids) + response_ids}, shortened
