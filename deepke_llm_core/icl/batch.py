"""Batch ICL: a whole file of records through an engine, writing records ``deepke-llm evaluate`` scores.

Records with an ``instruction`` (IEPile / InstructIE test files from ``deepke-llm convert``, or KnowLM-style
``instruction`` + ``input``) are sent exactly as they are, the same query a fine-tuned model reads, so API and
fine-tuned models are scored on the same footing. Records without one (raw ``text`` records) get the PromptCraft
prompt that ``make_prompt`` builds. The loop itself (resume, cache, concurrency, keeping answers on failure) is
the one every caller shares: ``engines.runner``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engines import Engine, Sampling
from ..engines.cache import ResponseCache
from ..engines.runner import run_to_file
from ..io import DataError, iter_jsonl
from ..prompts import query_of

__all__ = ["read_batch_records", "record_prompt", "run_batch"]


def read_batch_records(path: str) -> list[dict]:
    """JSON Lines records, each an object with a non-empty ``instruction`` or ``text``; errors name file and line."""
    records = []
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict):
            raise DataError(path, number, None, "expected a JSON object")
        if not (isinstance(record.get("instruction"), str) and record["instruction"]) and \
                not (isinstance(record.get("text"), str) and record["text"]):
            raise DataError(path, number, "instruction", "missing: expected an instruction record (deepke-llm convert "
                            "--split test) or a raw record with a non-empty 'text'")
        records.append(record)
    if not records:
        raise DataError(path, None, None, "no records")
    return records


def record_prompt(record: dict, make_prompt: Callable[[dict], str] | None) -> str:
    """The user message for a record: its instruction as it is, else the PromptCraft prompt of its text."""
    if isinstance(record.get("instruction"), str) and record["instruction"]:
        return query_of(record)
    if make_prompt is None:
        raise ValueError("a record without 'instruction' needs a PromptCraft prompt: pass --task")
    return make_prompt(record)


def run_batch(records: list[dict], output_file: str, engine: Engine, sampling: Sampling, *,
              make_prompt: Callable[[dict], str] | None = None, cache: ResponseCache | None = None,
              concurrency: int = 4, progress: bool | None = None, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Answer every record not yet in ``output_file``; return counts and token usage (``engines.runner``)."""
    return run_to_file(records, output_file, engine, sampling, lambda r: engine.messages(record_prompt(r, make_prompt)),
                       cache=cache, concurrency=concurrency, progress=progress, settings={"stage": "icl", **(settings or {})},
                       desc=f"icl {engine.name}")
