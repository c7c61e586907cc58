"""Ground extractions in their text: character offsets for every extracted string, and the ones not found.

A string the model extracted but that does not occur in the input is a hallucinated span (or a paraphrase); a
tiny or badly prompted model produces many. Strings are located by ``align`` (the project's one alignment): every
occurrence, in text order; a match found only after normalising whitespace, case or width carries
``"status": "fuzzy"``. ``ground_record`` adds a ``grounding`` field to a prediction record,
which ``deepke-llm evaluate`` ignores unless asked (``--grounded_only`` drops predicted tuples with a
hallucinated string before matching).

>>> ground_text('{"person": ["Tom", "Bob"]}', "Tom lives in Paris.")
{'spans': [{'text': 'Tom', 'start': 0, 'end': 3}], 'not_found': ['Bob']}
>>> ground_text('{"person": ["tom"]}', "Tom met Tom.")["spans"]
[{'text': 'tom', 'start': 0, 'end': 3, 'status': 'fuzzy'}, {'text': 'tom', 'start': 8, 'end': 11, 'status': 'fuzzy'}]
"""

from __future__ import annotations

from typing import Any

from ..evaluate import instruction_input, parse_json_output

__all__ = ["extracted_strings", "ground_text", "ground_record"]

_EMPTY = {"NAN", "nan", "无", ""}


def extracted_strings(obj: Any) -> list[str]:
    """Every string value in an answer (keys excluded): the strings of an answer whose task is unknown."""
    found: list[str] = []
    if isinstance(obj, dict):
        for value in obj.values():
            found += extracted_strings(value)
    elif isinstance(obj, list):
        for value in obj:
            found += extracted_strings(value)
    elif isinstance(obj, str) and obj not in _EMPTY:
        found.append(obj)
    return found


def ground_text(output: str, text: str, task: str | None = None) -> dict[str, Any]:
    """Offsets of every occurrence of every extracted string of ``output`` in ``text``, and the strings not found.

    With ``task`` the strings are the task's typed extractions' mentions (a KG entity is a dict key, for
    instance); without it, every string value of the answer. A string with exact occurrences lists those; one
    that occurs only normalised lists its fuzzy occurrences.
    """
    from ..align import TextIndex

    parsed = parse_json_output(output)
    if parsed is None:
        return {"spans": [], "not_found": [], "parse_error": True}
    if task:
        from ..tasks import get_task

        strings = [m.text for e in get_task(task).parse_output(parsed) for m in e.mentions()
                   if isinstance(m.text, str) and m.text not in _EMPTY]
    else:
        strings = extracted_strings(parsed)
    index = TextIndex(text)
    spans, missing = [], []
    for value in dict.fromkeys(strings):
        places, status = index.find(value)
        if not places:
            missing.append(value)
        for start, end in places:
            spans.append({"text": value, "start": start, "end": end, **({"status": status} if status == "fuzzy" else {})})
    spans.sort(key=lambda span: (span["start"], span["end"]))
    return {"spans": spans, "not_found": missing}


def ground_record(record: dict) -> dict:
    """The record with a ``grounding`` field for its ``output``."""
    return {**record, "grounding": ground_text(record.get("output", ""), instruction_input(record, fallback=record.get("instruction", "")),
                                            record.get("task"))}
