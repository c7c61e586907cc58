"""The task registry: one module per IE task, registered here once.

>>> get_task("ner").name
'NER'
"""

from __future__ import annotations

from . import ee, eea, eet, kg, ner, re, spo
from .base import ConvertOptions, Task

__all__ = ["TASKS", "get_task", "Task", "ConvertOptions"]

TASKS: dict[str, Task] = {
    "NER": ner.TASK,
    "RE": re.TASK,
    "SPO": spo.TASK,
    "EE": ee.TASK,
    "EET": eet.TASK,
    "EEA": eea.TASK,
    "KG": kg.TASK,
}


def get_task(name: str) -> Task:
    """Look a task up by name, case-insensitively; an unknown name lists the valid ones."""
    try:
        return TASKS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None
