"""Extract from texts in memory: ``extract(texts, task, schema, engine)`` -> typed extractions with offsets.

This is the convenience of langextract's ``extract`` or GLiNER's ``predict_entities`` on top of the project's own
pieces, with no files: each text becomes the IEPile test instructions ``deepke-llm convert --split test`` would
write (the task's recommended ``split_num`` unless one is given), every instruction goes through one engine call
(any engine: a local model, vLLM, an endpoint), the answers are parsed by the task into typed extractions
(``records``), the chunks of one text are merged, and every extracted string is located in the text
(``align``). The widget (``widgets.py``) and chapter 10 are thin layers over this function.

>>> from deepke_llm_core.schema import Schema
>>> [json.loads(r["instruction"])["schema"] for r in build_instructions("Tom met Ann.", "NER", Schema(["person"]), "en")]
[['person']]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .records import Extraction
from .schema import Schema, parse_schema_text

__all__ = ["ExtractionResult", "build_instructions", "extract"]


@dataclass
class ExtractionResult:
    """What one text gave: typed extractions (with offsets), the raw answer of each instruction, parse errors."""

    text: str
    extractions: list[Extraction]
    outputs: list[str] = field(default_factory=list)
    parse_errors: int = 0

    @property
    def not_in_text(self) -> list[Extraction]:
        """Extractions with a string that occurs nowhere in the text (hallucinated or paraphrased)."""
        return [e for e in self.extractions if any(m.status == "not_found" for m in e.mentions())]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "extractions": [e.to_json() for e in self.extractions],
                "parse_errors": self.parse_errors}


def build_instructions(text: str, task: str, schema: Schema | str, language: str,
                       split_num: int | None = None) -> list[dict]:
    """The test-split instruction records of one text, built by the converter (``deepke-llm convert --split test``)."""
    from .convert import ConvertConfig, RecordConverter
    from .tasks import get_task

    if not isinstance(text, str) or not text.strip():
        raise ValueError("the text is empty: give a text to extract from")
    schema = parse_schema_text(schema) if isinstance(schema, str) else schema
    task_obj = get_task(task)
    config = ConvertConfig(src_path="<text>", tgt_path="", task=task_obj.name, language=language, split="test",
                           split_num=split_num or task_obj.recommended_split_num)
    return [json.loads(line) for line in RecordConverter(config, schema).convert(1, {"text": text})]


def extract(texts: str | Sequence[str], task: str, schema: Schema | str, engine: Any, *, language: str = "en",
            split_num: int | None = None, lenient: bool = True, sampling: Any = None
            ) -> ExtractionResult | list[ExtractionResult]:
    """Extract from one text (returns one result) or several (a list, in order), with one engine call.

    Args:
        texts: a text or a list of texts.
        task: a registered task (``NER``, ``RE``, ``EE``, ...).
        schema: a :class:`Schema`, or its text in either file form.
        engine: an engine (``engines.create_engine(...)``, ``TransformersEngine.load(...)``).
        language: ``zh`` or ``en``: the instruction sentence's language.
        split_num: schema items per instruction; default: the task's recommended value.
        lenient: also read answers wrapped in code fences or slightly broken JSON (an answer that still does
            not parse counts as a parse error and contributes nothing).
        sampling: ``engines.Sampling``; default greedy, 512 new tokens.
    """
    from .align import align_extractions
    from .engines import Sampling
    from .prompts import query_of
    from .tasks import get_task

    single = isinstance(texts, str)
    batch = [texts] if single else list(texts)
    task_obj = get_task(task)
    schema = parse_schema_text(schema) if isinstance(schema, str) else schema
    instructions = [build_instructions(t, task_obj.name, schema, language, split_num) for t in batch]
    flat = [(k, record) for k, records in enumerate(instructions) for record in records]
    answers = engine.generate([engine.messages(query_of(r)) for _, r in flat], sampling or Sampling())
    results = [ExtractionResult(t, []) for t in batch]
    for (k, _), answer in zip(flat, answers):
        result = results[k]
        result.outputs.append(answer.text)
        parsed = task_obj.parse_answer(answer.text, lenient)
        if parsed is None:
            result.parse_errors += 1
        else:
            result.extractions.extend(parsed)
    for result in results:
        result.extractions = align_extractions(result.extractions, result.text)
    return results[0] if single else results
