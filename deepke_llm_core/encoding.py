"""Chat messages, prompts and answers -> token ids, the same way in training, prediction and serving.

Prompt and answer are tokenized separately and concatenated (as upstream's templates did segment by segment),
so the boundary between what the model reads and what it must write is exact: the loss masks the prompt
tokens, and generation starts where training's answers started. A prompt longer than its budget is fitted by
shortening the *input text* inside the IEPile instruction, never its instruction sentence or schema, and never
by cutting the end of the prompt (upstream cut the assistant marker off long prompts at inference).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .prompts import format_example, query_of, render_prompt

__all__ = ["encode", "render_messages", "encode_messages", "encode_prompt", "tokenize_example"]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text; BOS/EOS are already in the text, so no special tokens are added."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def render_messages(messages: Sequence[Mapping[str, str]], template: str, tokenizer: Any) -> str:
    """The prompt text of chat messages: one user turn (after an optional system message) with any template,
    several turns with the tokenizer's chat template only (legacy templates render a single query)."""
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    turns = list(messages[1:] if system is not None else messages)
    if len(turns) == 1 and turns[0]["role"] == "user":
        return render_prompt(turns[0]["content"], template, tokenizer=tokenizer, system=system)
    if template != "auto":
        raise ValueError(f"template {template!r} renders one user turn (plus a system message); send a single user message")
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def _shorten_query(query: str, budget: int, length_of: Callable[[str], int], tokenizer: Any) -> tuple[str, bool]:
    """Cut the ``input`` text inside an IEPile instruction until the prompt fits ``budget`` tokens.

    Only the text is shortened, never the instruction sentence or the schema (the model must still see what
    to extract). A query that is not IEPile JSON is returned unchanged (the caller reports it too long).
    """
    try:
        inner = json.loads(query)
    except json.JSONDecodeError:
        return query, False
    if not isinstance(inner, dict) or not isinstance(inner.get("input"), str):
        return query, False
    text_ids = encode(tokenizer, inner["input"])
    for _ in range(8):
        overflow = length_of(query) - budget
        if overflow <= 0:
            return query, True
        text_ids = text_ids[: max(len(text_ids) - overflow, 0)]
        inner = {**inner, "input": tokenizer.decode(text_ids, skip_special_tokens=True)}
        query = json.dumps(inner, ensure_ascii=False)
    return query, True


def encode_messages(messages: Sequence[Mapping[str, str]], tokenizer: Any, template: str,
                    budget: int | None = None) -> tuple[list[int], bool]:
    """Prompt ids for generation, fitted to ``budget`` tokens by shortening the last user turn's IEPile input;
    and whether it had to be shortened."""
    messages = [dict(m) for m in messages]
    ids = encode(tokenizer, render_messages(messages, template, tokenizer))
    if budget is None or len(ids) <= budget or messages[-1]["role"] != "user":
        return ids, False

    def with_query(query: str) -> list[dict[str, str]]:
        return messages[:-1] + [{"role": "user", "content": query}]

    def length_of(query: str) -> int:
        return len(encode(tokenizer, render_messages(with_query(query), template, tokenizer)))

    query, shortened = _shorten_query(messages[-1]["content"], budget, length_of, tokenizer)
    return encode(tokenizer, render_messages(with_query(query), template, tokenizer)), shortened


def encode_prompt(record: Mapping[str, Any], tokenizer: Any, template: str, system: str | None, budget: int) -> tuple[list[int], bool]:
    """Prompt ids of an instruction record (its query after an optional system message), fitted to ``budget``."""
    from .engines.base import user_messages

    return encode_messages(user_messages(query_of(record), system), tokenizer, template, budget)


def tokenize_example(record: dict, tokenizer: Any, template: str, system: str | None, max_source_length: int) -> tuple[dict, bool]:
    """``input_ids`` and ``labels`` (prompt masked with -100), and whether the input had to be shortened."""
    prompt_ids, shortened = encode_prompt(record, tokenizer, template, system, max_source_length)
    response_ids = encode(tokenizer, format_example(record, template, tokenizer=tokenizer, system=system)[1])
    return {"input_ids": prompt_ids + response_ids, "labels": [-100] * len(prompt_ids) + response_ids}, shortened
