"""Errors explained: every false positive and false negative of an evaluation, put in one category.

``deepke-llm evaluate --errors`` (``evaluate_records(..., errors=True)``) adds ``"errors": {category: n}`` to each
result and to each type of its ``per_type`` breakdown (EE: ``event_``/``argument_`` prefixed, as its metrics are).
A false positive is an extra predicted item the multiset matching could not pair with a gold one; it is
classified against the gold items of the same text and scoring level, by the first rule that applies:

============== ==========================================================================================
hallucinated   a string of it is not in the input text (the model invented or paraphrased a span)
duplicate      the same item as a gold one, predicted more times than the gold has it
type_confusion the same strings as a gold item, another type (NER, events; arguments: another event type)
wrong_relation the same head and tail as a gold triple, another relation (RE, SPO; KG: another attribute)
role_confusion the same argument string and event type as a gold argument, another role (EE)
reversed       a gold triple with head and tail swapped (RE, SPO, KG)
boundary       every string overlaps (in the text) the corresponding string of a gold item of the same labels
boundary_type  the strings overlap a gold item's, but its labels differ too
spurious       in the text, and no gold item shares or overlaps its strings
============== ==========================================================================================

Every gold item left unpaired is ``missed``. So, per type, the false-positive categories add up to
``pred - tp`` and ``missed`` is ``gold - tp`` (a test checks both on planted mistakes of every category).
Overlap is judged on the text: two strings overlap when some occurrence of one shares a character with some
occurrence of the other (a model answer carries strings, not offsets, so every occurrence counts).

Why classify on the typed extractions (``records``) rather than per task: a task's items are entities, triples,
events or arguments, whatever the task; the labels that can be confused are read off the item's class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .records import Argument, Attribute, Entity, Event, Extraction, Mention, Relation

__all__ = ["CATEGORIES", "hallucinated_mentions", "classify_errors", "ErrorCounter"]

CATEGORIES = ("hallucinated", "duplicate", "type_confusion", "wrong_relation", "role_confusion", "reversed",
              "boundary", "boundary_type", "spurious", "missed")
_BY_KIND = {
    Entity: ("hallucinated", "duplicate", "type_confusion", "boundary", "boundary_type", "spurious", "missed"),
    Event: ("hallucinated", "duplicate", "type_confusion", "boundary", "boundary_type", "spurious", "missed"),
    Relation: ("hallucinated", "duplicate", "wrong_relation", "reversed", "boundary", "boundary_type", "spurious", "missed"),
    Attribute: ("hallucinated", "duplicate", "wrong_relation", "reversed", "boundary", "boundary_type", "spurious", "missed"),
    Argument: ("hallucinated", "duplicate", "type_confusion", "role_confusion", "boundary", "boundary_type", "spurious",
               "missed"),
}


def hallucinated_mentions(extractions: Iterable[Extraction], text: str) -> list[Mention]:
    """The non-empty extracted strings that occur nowhere in ``text``."""
    return [m for e in extractions for m in e.mentions() if m.text and m.text not in text]


def _shape(item: Extraction) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """``(labels, strings)`` of an item: what can be confused, and what must be found in the text."""
    if isinstance(item, Entity):
        return (("type", item.entity_type),), (item.text.text,)
    if isinstance(item, Relation):
        return (("relation", item.relation),), (item.head.text, item.tail.text)
    if isinstance(item, Attribute):
        return (("relation", item.attribute),), (item.entity.text, item.value.text)
    if isinstance(item, Event):  # scored at the event level: type and trigger
        return (("type", item.event_type),), (item.trigger.text,)
    if isinstance(item, Argument):
        return (("type", item.event_type), ("role", item.role)), (item.text.text,)
    raise TypeError(f"cannot classify errors of {type(item).__name__}")


def _confusion(mine: tuple, theirs: tuple) -> str:
    """The category of an item whose strings equal a gold item's while its labels differ."""
    differ = {name for (name, value), (_, other) in zip(mine, theirs) if value != other}
    if differ == {"role"}:
        return "role_confusion"
    return "wrong_relation" if "relation" in differ else "type_confusion"


class _Text:
    """Occurrences of strings in one text, computed once per string."""

    def __init__(self, text: str):
        self.text = text
        self._spans: dict[str, list[tuple[int, int]]] = {}

    def occurrences(self, value: str) -> list[tuple[int, int]]:
        if value not in self._spans:
            found, start = [], self.text.find(value) if value else -1
            while start != -1:
                found.append((start, start + len(value)))
                start = self.text.find(value, start + 1)
            self._spans[value] = found
        return self._spans[value]

    def overlap(self, a: str, b: str) -> bool:
        if a == b:
            return True
        return any(s < f and t < e for s, e in self.occurrences(a) for t, f in self.occurrences(b))


def _classify(item: Extraction, gold: Counter, text: _Text) -> str:
    labels, strings = _shape(item)
    if any(s and s not in text.text for s in strings):
        return "hallucinated"
    if gold.get(item):
        return "duplicate"
    shapes = [_shape(g) for g in gold]
    for their_labels, their_strings in shapes:
        if their_strings == strings and their_labels != labels:
            return _confusion(labels, their_labels)
    if len(strings) == 2 and strings[0] != strings[1]:
        if any(l == labels and s == strings[::-1] for l, s in shapes):
            return "reversed"
    overlapping = [l for l, s in shapes if all(text.overlap(a, b) for a, b in zip(strings, s))]
    if labels in overlapping:
        return "boundary"
    return "boundary_type" if overlapping else "spurious"


def classify_errors(task: Any, text: str, gold: Sequence[Extraction], predicted: Sequence[Extraction],
                    dedupe: bool = False) -> list[tuple[str, str, str, Extraction]]:
    """Every error of one text as ``(level prefix, category, type, item)``: false positives, then ``missed`` gold.

    ``task`` gives the scoring levels (EE: ``event_`` and ``argument_``); ``dedupe`` is ``match_mode="set"``.
    """
    found, expected = task.score_levels(list(predicted)), task.score_levels(list(gold))
    where = _Text(text)
    errors = []
    for prefix in found.keys() | expected.keys():
        pred_items = Counter(item for _, item in found.get(prefix, []))
        gold_items = Counter(item for _, item in expected.get(prefix, []))
        if dedupe:  # set mode de-duplicates each level on its own, as the scorer does (and upstream)
            pred_items, gold_items = Counter(set(pred_items)), Counter(set(gold_items))
        for item, n in pred_items.items():
            extra = n - gold_items.get(item, 0)
            if extra > 0:
                category = _classify(item, gold_items, where)
                errors += [(prefix, category, item.type, item)] * extra
        for item, n in gold_items.items():
            errors += [(prefix, "missed", item.type, item)] * max(0, n - pred_items.get(item, 0))
    return errors


class ErrorCounter:
    """Error counts over many texts, in total and per type; :meth:`attach` writes them into a result dict."""

    def __init__(self, task: Any, dedupe: bool = False):
        self.task, self.dedupe = task, dedupe
        self.total: Counter = Counter()
        self.per_type: dict[str, Counter] = {}
        self.kinds: dict[str, set] = {}

    def add(self, text: str, gold: Sequence[Extraction], predicted: Sequence[Extraction]) -> None:
        levels = self.task.score_levels(list(gold) + list(predicted))
        for prefix, items in levels.items():
            self.kinds.setdefault(prefix, set()).update(type(item) for _, item in items)
        for prefix, category, kind, _ in classify_errors(self.task, text, gold, predicted, self.dedupe):
            self.total[prefix + category] += 1
            self.per_type.setdefault(kind, Counter())[prefix + category] += 1

    def keys(self) -> list[str]:
        """The categories that can occur at each level, for the kinds of items seen (all zero-filled)."""
        keys: list[str] = []
        for prefix in self.task.score_levels([]):
            kinds = self.kinds.get(prefix) or set()
            names = [c for c in CATEGORIES if any(c in _BY_KIND[k] for k in kinds)] or list(_BY_KIND[Entity])
            keys += [prefix + c for c in names]
        return keys

    def attach(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result["errors"]`` and ``result["per_type"][type]["errors"]`` (types without errors get zeros)."""
        keys = self.keys()
        result["errors"] = {k: self.total.get(k, 0) for k in keys}
        for kind, entry in result.get("per_type", {}).items():
            counts = self.per_type.get(kind, Counter())
            entry["errors"] = {k: counts.get(k, 0) for k in keys}
        return result
