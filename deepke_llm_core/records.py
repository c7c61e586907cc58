"""Typed records: what a model extracted (entities, relations, events, attributes) and the instruction it answered.

Why types instead of dicts and tuples: one extraction used to travel in about nine shapes (annotation dicts, answer
dicts, scoring tuples whose field order differed by task, highlight marks, grounding spans, ...), and each consumer
re-derived what it needed with a shape test. Here a task's parser returns these small frozen dataclasses once, and
scoring, grounding, highlighting, the widget and ``extract`` all read the same objects (langextract's ``Extraction``
with its ``char_interval`` is the model followed). Upstream's files stay the on-disk format: ``to_upstream()`` gives
the annotation dict a raw IE record carries.

Equality and hashing ignore offsets: two extractions are the same answer when their strings and labels are equal,
wherever the strings were found, so ``collections.Counter`` over extractions is exactly the multiset matching of
upstream's scorer (SPEC.md §2).

>>> a = Entity(Mention("Tom", 0, 3), "person")
>>> a == Entity(Mention("Tom"), "person"), a.to_upstream()
(True, {'entity': 'Tom', 'entity_type': 'person'})
>>> Event.of("hire", "hired", [("Ann", "employee"), ("Acme", "employer")]).describe()
'hire: trigger “hired” (employer = Acme; employee = Ann)'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Union

__all__ = [
    "Mention",
    "Entity",
    "Relation",
    "Argument",
    "Event",
    "Attribute",
    "Extraction",
    "Mark",
    "InstructionRecord",
    "instruction_record",
]


@dataclass(frozen=True)
class Mention:
    """An extracted string and, once aligned, where it is in its text.

    ``start``/``end`` are character offsets (``text[start:end] == self.text`` unless ``status`` is ``fuzzy``);
    ``status`` is ``""`` before alignment, then ``exact``, ``fuzzy`` (found after normalising whitespace, case
    or width) or ``not_found`` (the string occurs nowhere: a hallucinated or paraphrased span).
    """

    text: str
    start: int | None = field(default=None, compare=False)
    end: int | None = field(default=None, compare=False)
    status: str = field(default="", compare=False)

    def located(self, start: int, end: int, status: str = "exact") -> "Mention":
        return replace(self, start=start, end=end, status=status)

    def to_json(self, label: str) -> dict[str, Any]:
        """``{"type", "text", "start", "end"}`` (``extract``'s output item for one string)."""
        out: dict[str, Any] = {"type": label, "text": self.text, "start": self.start, "end": self.end}
        if self.status in ("fuzzy", "not_found"):
            out["status"] = self.status
        return out


@dataclass(frozen=True)
class Mark:
    """One string of an extraction as a picture shows it: the label drawn after it and the key of its colour."""

    mention: Mention
    label: str
    key: str
    kind: str = "span"  # span, subject, object, trigger or argument: a CSS class
    category: str = ""  # diff views: correct, fp or fn

    @property
    def text(self) -> str:
        return self.mention.text


class _Extraction:
    """What every extraction offers; subclasses are frozen dataclasses."""

    kind: ClassVar[str] = ""

    @property
    def type(self) -> str:  # the schema label that the per-type breakdown groups by
        raise NotImplementedError

    def mentions(self) -> tuple[Mention, ...]:
        """The extracted strings (schema labels such as types and relation names are not strings of the text)."""
        raise NotImplementedError

    def with_mentions(self, mentions: Iterable[Mention]) -> "_Extraction":
        """The same extraction with its mentions replaced, in ``mentions()`` order (alignment adds offsets)."""
        raise NotImplementedError

    def marks(self) -> list[Mark]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def to_upstream(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Entity(_Extraction):
    """A typed span (NER)."""

    text: Mention
    entity_type: str
    kind: ClassVar[str] = "entity"

    @classmethod
    def of(cls, text: str, entity_type: str) -> "Entity":
        return cls(Mention(text), entity_type)

    @property
    def type(self) -> str:
        return self.entity_type

    def mentions(self):
        return (self.text,)

    def with_mentions(self, mentions):
        (text,) = mentions
        return replace(self, text=text)

    def marks(self):
        return [Mark(self.text, self.entity_type, self.entity_type)]

    def describe(self):
        return f"{self.entity_type}: {self.text.text}"

    def to_upstream(self):
        return {"entity": self.text.text, "entity_type": self.entity_type}

    def to_json(self):
        return self.text.to_json(self.entity_type)


@dataclass(frozen=True)
class Relation(_Extraction):
    """A (head, relation, tail) triple (RE, SPO); ``head_type``/``tail_type`` are kept for SPO, not compared."""

    head: Mention
    relation: str
    tail: Mention
    head_type: str = field(default="", compare=False)
    tail_type: str = field(default="", compare=False)
    kind: ClassVar[str] = "relation"

    @classmethod
    def of(cls, head: str, relation: str, tail: str) -> "Relation":
        return cls(Mention(head), relation, Mention(tail))

    @property
    def type(self) -> str:
        return self.relation

    def mentions(self):
        return (self.head, self.tail)

    def with_mentions(self, mentions):
        head, tail = mentions
        return replace(self, head=head, tail=tail)

    def marks(self):
        return [Mark(self.head, f"{self.relation}: subject", self.relation, "subject"),
                Mark(self.tail, f"{self.relation}: object", self.relation, "object")]

    def describe(self):
        return f"{self.head.text} \u2192 {self.relation} \u2192 {self.tail.text}"

    def to_upstream(self):
        out = {"head": self.head.text, "relation": self.relation, "tail": self.tail.text}
        if self.head_type or self.tail_type:
            out.update(head_type=self.head_type, tail_type=self.tail_type)
        return out

    def to_json(self):
        return {"type": self.relation, "head": self.head.to_json("head"), "tail": self.tail.to_json("tail")}


@dataclass(frozen=True)
class Argument(_Extraction):
    """An event argument: a string in a role (of an event of ``event_type``, when scored on its own)."""

    text: Mention
    role: str
    event_type: str = ""
    kind: ClassVar[str] = "argument"

    @classmethod
    def of(cls, text: str, role: str, event_type: str = "") -> "Argument":
        return cls(Mention(text), role, event_type)

    @property
    def type(self) -> str:
        return self.event_type

    def mentions(self):
        return (self.text,)

    def with_mentions(self, mentions):
        (text,) = mentions
        return replace(self, text=text)

    def marks(self):
        label = f"{self.role} ({self.event_type})" if self.event_type else self.role
        return [Mark(self.text, label, self.role, "argument")]

    def describe(self):
        return f"{self.event_type}: {self.role} = {self.text.text}"

    def to_upstream(self):
        return {"argument": self.text.text, "role": self.role}

    def to_json(self):
        return self.text.to_json(self.role)


def _argument_order(argument: Argument) -> tuple[str, str]:
    return str(argument.text.text), str(argument.role)


@dataclass(frozen=True)
class Event(_Extraction):
    """An event: its type, trigger and arguments (EE, EEA; EET has no arguments). Arguments are kept sorted."""

    event_type: str
    trigger: Mention
    arguments: tuple[Argument, ...] = ()
    kind: ClassVar[str] = "event"

    @classmethod
    def of(cls, event_type: str, trigger: str | Mention, pairs: Iterable[tuple[str, str]] = ()) -> "Event":
        """An event from ``(argument, role)`` pairs; argument order carries no meaning, so it is canonicalised."""
        arguments = sorted((Argument(Mention(a), r, event_type) for a, r in pairs), key=_argument_order)
        return cls(event_type, trigger if isinstance(trigger, Mention) else Mention(trigger), tuple(arguments))

    @property
    def type(self) -> str:
        return self.event_type

    def mentions(self):
        return ((self.trigger,) if self.trigger.text else ()) + tuple(a.text for a in self.arguments)

    def with_mentions(self, mentions):
        mentions = list(mentions)
        trigger = mentions.pop(0) if self.trigger.text else self.trigger
        arguments = tuple(replace(a, text=m) for a, m in zip(self.arguments, mentions))
        return replace(self, trigger=trigger, arguments=arguments)

    def marks(self):
        head = [Mark(self.trigger, self.event_type, self.event_type, "trigger")] if self.trigger.text else []
        return head + [Mark(a.text, a.role, a.role, "argument") for a in self.arguments if a.text.text]

    def describe(self):
        roles = "; ".join(f"{a.role} = {a.text.text}" for a in self.arguments)
        return f"{self.event_type}: trigger \u201c{self.trigger.text}\u201d" + (f" ({roles})" if roles else "")

    def to_upstream(self):
        return {"event_type": self.event_type, "event_trigger": self.trigger.text,
                "arguments": [a.to_upstream() for a in self.arguments]}

    def to_json(self):
        return {"type": self.event_type, "trigger": self.trigger.to_json("trigger"),
                "arguments": [a.to_json() for a in self.arguments]}


@dataclass(frozen=True)
class Attribute(_Extraction):
    """An entity's attribute value (KG): ``(entity, attribute, value)``."""

    entity: Mention
    attribute: str
    value: Mention
    entity_type: str = field(default="", compare=False)
    kind: ClassVar[str] = "attribute"

    @classmethod
    def of(cls, entity: str, attribute: str, value: str) -> "Attribute":
        return cls(Mention(entity), attribute, Mention(value))

    @property
    def type(self) -> str:
        return self.attribute

    def mentions(self):
        return (self.entity, self.value)

    def with_mentions(self, mentions):
        entity, value = mentions
        return replace(self, entity=entity, value=value)

    def marks(self):
        return [Mark(self.entity, self.entity_type or "entity", self.entity_type or "entity", "subject"),
                Mark(self.value, self.attribute, self.attribute, "object")]

    def describe(self):
        return f"{self.entity.text} \u2192 {self.attribute} \u2192 {self.value.text}"

    def to_upstream(self):
        return {"head": self.entity.text, "relation": self.attribute, "tail": self.value.text}

    def to_json(self):
        return {"type": self.attribute, "entity": self.entity.to_json(self.entity_type or "entity"),
                "value": self.value.to_json(self.attribute)}


Extraction = Union[Entity, Relation, Event, Argument, Attribute]


# ---- instruction records ---------------------------------------------------------------------------------------


@dataclass
class InstructionRecord:
    """One converted record (IEPile/InstructIE instruction format), its instruction parsed once.

    ``raw`` is the record as read; everything written back (``output``, grounding) is added to a copy of it, so
    fields this project does not know survive a round trip. ``input`` and ``schema`` come from the instruction
    JSON; a KnowLM-style record whose instruction is plain text has ``input`` from its own ``input`` field.
    """

    raw: dict[str, Any]
    instruction: str
    input: str
    schema: list[Any]
    is_iepile: bool

    @property
    def task(self) -> str | None:
        value = self.raw.get("task")
        return value if isinstance(value, str) else None

    @property
    def output(self) -> Any:
        return self.raw.get("output")

    @property
    def label(self) -> Any:
        """The gold annotation list (a test record's ``label``, parsed when it is a JSON string)."""
        value = self.raw.get("label")
        return json.loads(value) if isinstance(value, str) else value

    def with_fields(self, **fields: Any) -> dict[str, Any]:
        """The raw record plus ``fields`` (what the writers emit)."""
        return {**self.raw, **fields}


def instruction_record(raw: Mapping[str, Any]) -> InstructionRecord:
    """Parse a record's ``instruction`` once; a non-JSON instruction is a plain-text (KnowLM-style) one.

    >>> r = instruction_record({"instruction": '{"instruction": "x", "schema": ["person"], "input": "Tom"}'})
    >>> r.input, r.schema, r.is_iepile
    ('Tom', ['person'], True)
    """
    instruction = raw.get("instruction")
    if not isinstance(instruction, str):
        raise ValueError(f"record has no string 'instruction' field (keys: {sorted(raw)})")
    inner: Any = None
    if instruction.lstrip().startswith("{"):
        try:
            inner = json.loads(instruction)
        except json.JSONDecodeError:
            inner = None
    if isinstance(inner, dict) and isinstance(inner.get("input"), str):
        schema = inner.get("schema")
        return InstructionRecord(dict(raw), instruction, inner["input"], schema if isinstance(schema, list) else [], True)
    extra = raw.get("input")
    return InstructionRecord(dict(raw), instruction, extra if isinstance(extra, str) else "", [], False)
