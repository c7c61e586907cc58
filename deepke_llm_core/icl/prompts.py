"""In-context-learning prompts: instruction + demonstrations + query, exactly as upstream's ``PromptCraft``.

Why exact strings: published ICL numbers (and users' expectations) come from these prompts, so every constant is
SPEC.md §6.2 character for character, and a test compares them with the literals there. What differs between the
tasks (instructions, query line, demonstrations, answer parsing) is owned by each task in ``tasks/icl.py``. The only departure is
a fix (SPEC.md §10): upstream's default English NER instruction, when neither ``domain`` nor ``labels`` is given,
was the *relation-extraction* sentence; ours is the NER sentence (``UPSTREAM_NER_EN`` keeps the old one).

The prompt is ``instruction + examples + query``. A custom ``instruction`` is used verbatim plus ``"\\n"`` and
replaces the default *and* its output-format line, as upstream does.

>>> build_icl_prompt("ner", "en", "Tom lives in Paris.", labels=["PER", "LOC"]).splitlines()[-2:]
['Input: Tom lives in Paris.', 'Output: ']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..tasks.icl import ICL_TASKS as _TASKS
from ..tasks.icl import INSTRUCTIONS, UPSTREAM_NER_EN, ICLTask

__all__ = [
    "ICL_TASKS",
    "LANGUAGES",
    "INSTRUCTIONS",
    "UPSTREAM_NER_EN",
    "normalize_language",
    "check_task",
    "icl_task",
    "default_instruction",
    "query_text",
    "examples_block",
    "build_icl_prompt",
]

ICL_TASKS = tuple(_TASKS)
LANGUAGES = ("en", "zh", "ch")  # "ch" is upstream's spelling of Chinese; "cn" is accepted for its file names


def normalize_language(language: str) -> str:
    """``en`` stays ``en``; ``zh``, ``ch`` and ``cn`` become upstream's ``ch``. Anything else lists the valid names."""
    value = (language or "").strip().lower()
    if value == "en":
        return "en"
    if value in ("zh", "ch", "cn"):
        return "ch"
    raise ValueError(f"unknown language {language!r}; valid languages: {', '.join(LANGUAGES)}")


def check_task(task: str) -> str:
    """The lower-case task name, or an error listing the valid ones."""
    value = (task or "").strip().lower()
    if value not in _TASKS:
        raise ValueError(f"unknown ICL task {task!r}; valid tasks: {', '.join(ICL_TASKS)}")
    return value


def icl_task(task: str) -> ICLTask:
    """The registered ICL task (``tasks/icl.py``)."""
    return _TASKS[check_task(task)]


def default_instruction(task: str, language: str, domain: str | None = None, labels: Sequence[str] | None = None) -> str:
    """The default instruction plus its output-format line (upstream's choice order: both, domain, labels, neither)."""
    return icl_task(task).instruction(normalize_language(language), domain, labels)


def query_text(task: str, language: str, text: str, *, head_entity: str | None = None, head_type: str | None = None,
               tail_entity: str | None = None, tail_type: str | None = None) -> str:
    """The query part (``text`` is the relation label for ``da``)."""
    pair = {"head_entity": head_entity, "head_type": head_type, "tail_entity": tail_entity, "tail_type": tail_type}
    return icl_task(task).query(normalize_language(language), text, pair)


def examples_block(task: str, language: str, examples: Sequence[Mapping[str, Any]]) -> str:
    """The demonstrations, rendered as upstream renders them (``key: value`` pairs run together, one dict a line).

    ``examples`` are normalised demonstrations (``demos.load_demos``): ``input``/``output`` for ner, ee and rte;
    ``context``, ``head_*``, ``tail_*``, ``relation`` for re and da.
    """
    spec, language = icl_task(task), normalize_language(language)
    if not examples:
        return ""
    lines = [f"{spec.examples_header(language, examples)}: "]
    for example in examples:
        lines.append("".join(f"{key}: {value}" for key, value in spec.example_items(language, example).items()))
    return "".join(line + "\n" for line in lines)


def build_icl_prompt(task: str, language: str, text: str, *, domain: str | None = None, labels: Sequence[str] | None = None,
                     head_entity: str | None = None, head_type: str | None = None, tail_entity: str | None = None,
                     tail_type: str | None = None, examples: Sequence[Mapping[str, Any]] | None = None,
                     instruction: str | None = None) -> str:
    """The complete user message: instruction, then demonstrations (when ``examples`` is non-empty), then the query.

    Args:
        task: ner, re, ee, rte or da.
        language: en, or zh/ch for Chinese.
        text: the passage; for ``da``, the relation label to generate samples for.
        domain, labels: choose the default instruction's variant (``da`` requires labels).
        head_entity, head_type, tail_entity, tail_type: the pair for ``re``.
        examples: normalised demonstrations; ``None`` or empty means zero-shot.
        instruction: a custom instruction, used verbatim plus a newline (replaces the default and its format line).
    """
    spec, language = icl_task(task), normalize_language(language)
    if spec.needs_labels and not labels:
        raise ValueError(f"task {spec.name} needs --labels (the entity types, e.g. 'person, organization')")
    head = instruction + "\n" if instruction is not None else spec.instruction(language, domain, labels)
    query = query_text(task, language, text, head_entity=head_entity, head_type=head_type,
                       tail_entity=tail_entity, tail_type=tail_type)
    return head + examples_block(task, language, examples or ()) + query
