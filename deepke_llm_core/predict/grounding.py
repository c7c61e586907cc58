"""Ground extractions in their text: character offsets for every extracted string, and the ones not found.

A string the model extracted but that does not occur in the input is a hallucinated span (or a paraphrase); a
tiny or badly prompted model produces many. ``ground_record`` adds a ``grounding`` field to a prediction record,
which ``deepke-llm evaluate`` ignores unless asked (``--grounded_only`` drops predicted tuples with a
hallucinated string before matching).

>>> ground_text('{"person": ["Tom", "Bob"]}', "Tom lives in Paris.")
{'spans': [{'text': 'Tom', 'start': 0, 'end': 3}], 'not_found': ['Bob']}
"""

from __future__ import annotations

from typing import Any

from ..evaluate import instruction_input, parse_json_output

__all__ = ["extracted_strings", "ground_text", "ground_record"]

_EMPTY = {"NAN", "nan", "无", ""}


def extracted_strings(obj: Any, keys_at_depth: int | None = None, depth: int = 0) -> list[str]:
    """Every string value in an answer (schema keys excluded); ``keys_at_depth`` also takes dict keys there (KG entities)."""
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if keys_at_depth == depth and isinstance(key, str):
                found.append(key)
            found += extracted_strings(value, keys_at_depth, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            found += extracted_strings(value, keys_at_depth, depth)
    elif isinstance(obj, str) and obj not in _EMPTY:
        found.append(obj)
    return found


def ground_text(output: str, text: str, task: str | None = None) -> dict[str, Any]:
    """Offsets (first occurrence) of every extracted string of ``output`` in ``text``, and the strings not found."""
    parsed = parse_json_output(output)
    if parsed is None:
        return {"spans": [], "not_found": [], "parse_error": True}
    strings = extracted_strings(parsed, keys_at_depth=1 if task == "KG" else None)
    spans, missing = [], []
    for value in dict.fromkeys(strings):
        start = text.find(value)
        if start >= 0:
            spans.append({"text": value, "start": start, "end": start + len(value)})
        else:
            missing.append(value)
    return {"spans": spans, "not_found": missing}


def ground_record(record: dict) -> dict:
    """The record with a ``grounding`` field for its ``output``."""
    return {**record, "grounding": ground_text(record.get("output", ""), instruction_input(record, fallback=record.get("instruction", "")),
                                            record.get("task"))}
