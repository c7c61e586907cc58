"""The small protocol every IE task implements, and the sampling primitives they share.

A task owns everything about itself (DESIGN.md §1, §3b): its instruction sentence, how to read and check its
annotation, which schema items go into a training or test instruction, how to render the target ``output`` for a
chunk of schema items, how to turn a model's answer and a gold label into typed extractions
(``records.Entity``/``Relation``/``Event``/``Attribute``), the JSON Schema of a correct answer, its recommended
``split_num`` and its display heading. Everything else (chunking, record layout, grouping and metrics) is
task-independent and lives in ``convert.py`` and ``evaluate.py``; no module outside ``tasks/`` switches on a
task's name.

Schema *items* are hashable (strings or tuples) so that a chunk can key a cache of its rendered instruction
head; :meth:`Task.schema_entry` turns an item into the JSON value written into the instruction.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..io import DataError
from ..records import Entity, Extraction, Mention
from ..schema import Schema

__all__ = [
    "ConvertOptions",
    "Task",
    "LabelListTask",
    "binomial",
    "sample_subset",
    "order_items",
    "require_str",
    "by_position",
    "object_schema",
    "span_or",
    "STRING",
    "STRINGS",
]

Item = Any  # a hashable schema item: str or tuple


@dataclass(frozen=True)
class ConvertOptions:
    """How instructions are built; one field per command-line flag that changes the output."""

    language: str = "zh"
    split_num: int = 4
    neg_schema: float = 1.0
    random_sort: bool = False
    relation_keys: tuple[str, str] = ("subject", "object")
    legacy_spo_instruction: bool = False
    cluster_mode: bool = False

    @property
    def needs_rng(self) -> bool:
        """Whether any random draw can change the output (deterministic runs skip seeding an RNG)."""
        return self.random_sort or self.cluster_mode or 0 < self.neg_schema < 1


STRING = {"type": "string"}
STRINGS = {"type": "array", "items": STRING}


def object_schema(properties: dict[str, dict], required: bool = True) -> dict:
    """A JSON object with exactly these keys (all required unless ``required`` is false), nothing else."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(properties)
    return schema


def span_or(span: dict, *words: str) -> dict:
    """An extractive string, or one of the task's fixed words (EE's ``"NAN"``), which are not spans of the text."""
    return span if span == STRING else {"anyOf": [span, *({"const": w} for w in words)]}


def binomial(rng: random.Random | None, trials: int, p: float) -> int:
    """Sum of ``trials`` Bernoulli(p) draws; ``p >= 1`` or ``p < 0`` keeps all (upstream's "all negatives")."""
    if p >= 1 or p < 0:
        return trials
    if p == 0:
        return 0
    assert rng is not None
    return sum(rng.random() < p for _ in range(trials))


def sample_subset(items: Sequence[Item], n: int, rng: random.Random | None) -> list[Item]:
    """A random ``n``-subset; keeping everything needs no randomness (order is decided later)."""
    if n >= len(items):
        return list(items)
    assert rng is not None
    return rng.sample(list(items), n)


def order_items(items: list[Item], random_sort: bool, rng: random.Random | None, key=None) -> list[Item]:
    """Sorted mode uses Python ``sorted`` (code-point order, as upstream); random mode a seeded shuffle."""
    if random_sort:
        assert rng is not None
        items = list(items)
        rng.shuffle(items)
        return items
    return sorted(items, key=key)


def by_position(text: str, values: Iterable[str]) -> list[str]:
    """Stable sort by first occurrence in the text; a value not found (``find`` = -1) comes first."""
    return sorted(values, key=text.find)


def require_str(obj: dict, key: str, where: str, *, allow_empty: bool = True) -> str:
    """Fetch ``obj[key]`` as a string or raise a located-field error (the caller adds file and line)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or (not allow_empty and not value):
        got = "missing" if not isinstance(obj, dict) or key not in obj else f"got {type(value).__name__}"
        raise DataError(None, None, f"{where}.{key}", f"expected a{' non-empty' if not allow_empty else ''} string, {got}")
    return value


class Task:
    """Base class: override what differs. Instances are stateless and shared."""

    name: str = ""
    annotation_field: str = ""
    sentences: dict[str, str] = {}
    recommended_split_num: int = 4  # schema items per instruction (SPEC.md §1.2: NER 6, KG 1, others 4)
    heading: str = "Extractions"  # what a list of this task's extractions is called in pictures

    # ---- conversion -------------------------------------------------------------------------------------
    def instruction(self, language: str, opts: ConvertOptions | None = None) -> str:
        """The instruction sentence for ``language`` (SPEC.md §1.4)."""
        try:
            return self.sentences[language]
        except KeyError:
            raise ValueError(f"task {self.name} has no instruction for language {language!r}; use one of {sorted(self.sentences)}") from None

    def read_annotation(self, record: dict, schema: Schema | None) -> list | None:
        """Check and clean the record's annotation; ``None`` when the field is absent (test split).

        Raises :class:`DataError` with the field path; ``schema`` (when given) is used to reject unknown types.
        """
        raise NotImplementedError

    def train_items(self, annotation: list, schema: Schema, opts: ConvertOptions, rng: random.Random | None) -> list[Item] | None:
        """Schema items of one training record, ordered; ``None`` means the record yields no instruction."""
        raise NotImplementedError

    def test_items(self, annotation: list | None, schema: Schema) -> list[Item] | None:
        """Schema items of one test record: the full inventory in schema-file order."""
        raise NotImplementedError

    def schema_entry(self, item: Item, split: str) -> Any:
        """The JSON value of one item inside the instruction's ``schema`` list."""
        return item

    def label_dict(self, annotation: list, text: str, opts: ConvertOptions) -> Any:
        """Per-record structure from which every chunk's output is rendered (built once per record)."""
        raise NotImplementedError

    def render_output(self, chunk: Sequence[Item], labels: Any, text: str) -> dict:
        """The target object for one chunk, keyed in chunk order (SPEC.md §1.11)."""
        raise NotImplementedError

    def collect_schema(self, annotations: Iterable[list]) -> Schema:
        """Build a schema from the labels seen in the data (``--schema_path`` omitted)."""
        raise NotImplementedError

    def output_schema(self, entries: list, span: dict = STRING) -> dict:
        """JSON Schema of a correct answer to an instruction whose ``schema`` is ``entries`` (guided decoding).

        The answer's keys are exactly the instruction's schema items; the default is a list of strings per item.
        ``span`` is the schema of every *extractive* string (one copied from the input: an entity, a head or tail,
        a trigger, an argument); span-constrained decoding passes a marked string (``predict.spans.SPAN``) there.
        """
        return object_schema({str(e): {"type": "array", "items": span} for e in entries})

    # ---- evaluation -------------------------------------------------------------------------------------
    def parse_output(self, obj: dict, rel_keys: str = "any") -> list[Extraction]:
        """Typed extractions from a parsed answer object; malformed inner items are skipped, never raised."""
        raise NotImplementedError

    def parse_answer(self, text: Any, lenient: bool = False, rel_keys: str = "any") -> list[Extraction] | None:
        """Typed extractions from a model's raw answer, or ``None`` when it does not parse (a parse error)."""
        from ..evaluate import parse_json_output

        obj = parse_json_output(text, lenient)
        return None if obj is None else self.parse_output(obj, rel_keys)

    def gold_tuples(self, label: list) -> list[Extraction]:
        """Typed gold extractions from a record's ``label`` list (upstream's annotation dicts)."""
        raise NotImplementedError

    def score_levels(self, extractions: list[Extraction]) -> dict[str, list[tuple[str, Extraction]]]:
        """``{metric prefix: [(type, item), ...]}``; one unprefixed level unless a task scores several."""
        return {"": [(e.type, e) for e in extractions]}

    # What ``evaluate`` counts, straight from the JSON. A typed extraction costs about 3 us to build (two frozen
    # dataclasses) against 0.1 us for a tuple, which is most of the scorer's time on a large file, so a task may
    # return ``(type, key)`` pairs whose keys are equal exactly when the typed extractions are. The defaults go
    # through the typed extractions; ``tests/test_scoring.py`` checks every task's override against them.
    def score_answer(self, obj: dict, rel_keys: str = "any") -> dict[str, list[tuple[str, Any]]]:
        """``score_levels(parse_output(obj))``, or the same with cheaper items of equal equality."""
        return self.score_levels(self.parse_output(obj, rel_keys))

    def score_gold(self, label: list) -> dict[str, list[tuple[str, Any]]]:
        """``score_levels(gold_tuples(label))``, or the same with cheaper items of equal equality."""
        return self.score_levels(self.gold_tuples(label))


def _label_values(obj: dict) -> list[tuple[str, str]]:
    """``(label, value)`` for every string of a ``{label: [values]}`` answer; other shapes are skipped. (Exact
    ``type`` checks: the answer was parsed from JSON, which makes no subclasses, and this runs once per record.)"""
    return [(t, v) for t, values in obj.items() if type(values) is list for v in values if type(v) is str]


class LabelListTask(Task):
    """Tasks whose schema is a flat list of labels and whose annotation is a list of flat objects.

    Subclasses set ``fields`` (the keys every annotation element must have), ``label_of`` (which key is the
    schema label), ``universe_of`` (which schema line holds the labels) and ``dedupe_on`` (the keys that make
    two annotations duplicates, or ``None``).
    """

    fields: tuple[str, ...] = ()
    label_key: str = ""
    value_key: str = ""  # the extracted string of an element (entity, trigger); answers are {label: [values]}
    dedupe_on: tuple[str, ...] | None = None

    def label_of(self, element: dict) -> str:
        return element[self.label_key]

    def universe(self, schema: Schema) -> list[str]:
        return schema.types

    def read_annotation(self, record: dict, schema: Schema | None) -> list | None:
        field = self.annotation_field
        if field not in record:
            return None
        values = record[field]
        if not isinstance(values, list):
            raise DataError(None, None, field, f"expected a list, got {type(values).__name__}")
        known = set(self.universe(schema)) if schema is not None else None
        seen: set = set()
        cleaned = []
        for i, element in enumerate(values):
            where = f"{field}[{i}]"
            if not isinstance(element, dict):
                raise DataError(None, None, where, f"expected an object with keys {', '.join(self.fields)}")
            for key in self.fields:
                require_str(element, key, where)
            label = self.label_of(element)
            if known is not None and label not in known:
                raise DataError(None, None, f"{where}.{self.label_key}", f"{label!r} is not in the schema")
            if self.dedupe_on is not None:
                key = tuple(element[k] for k in self.dedupe_on)
                if key in seen:
                    continue
                seen.add(key)
            cleaned.append(element)
        return cleaned

    def positives(self, annotation: list) -> list[str]:
        return list(dict.fromkeys(self.label_of(e) for e in annotation))

    def train_items(self, annotation, schema, opts, rng):
        universe = self.universe(schema)
        positives = self.positives(annotation)
        if opts.cluster_mode:
            raise AssertionError("cluster mode is handled by convert.cluster_items")
        if opts.neg_schema == 0:
            candidates = positives
            if not candidates:
                return None
        else:
            pos = set(positives)
            negatives = [u for u in universe if u not in pos]
            n = binomial(rng, len(universe), opts.neg_schema)
            if not positives:
                n = max(n, 1)
            candidates = sample_subset(negatives, min(n, len(negatives)), rng) + positives
        return order_items(candidates, opts.random_sort, rng)

    def test_items(self, annotation, schema):
        return list(self.universe(schema))

    def label_dict(self, annotation, text, opts):
        # Annotation order, duplicates as given: upstream computed a text-position order and discarded it (SPEC §1.11).
        labels: dict[str, list] = {}
        for e in annotation:
            labels.setdefault(self.label_of(e), []).append(e[self.value_key])
        return labels

    def render_output(self, chunk, labels, text):
        return {label: labels.get(label, []) for label in chunk}

    def make(self, value: str, label: str) -> Extraction:
        """The extraction of one ``{label: [value, ...]}`` answer item (an entity; EET: an event trigger)."""
        return Entity(Mention(value), label)

    def parse_output(self, obj, rel_keys="any"):
        return [self.make(v, t) for t, v in _label_values(obj)]

    def gold_tuples(self, label):
        return [self.make(v, t) for t, v in self._gold_values(label)]

    def score_answer(self, obj, rel_keys="any"):  # make(v, t) == make(v2, t2) exactly when (t, v) == (t2, v2)
        return {"": _label_values(obj)}

    def score_gold(self, label):
        return {"": self._gold_values(label)}

    def _gold_values(self, label: list) -> list[tuple[str, str]]:
        value_key, label_key = self.value_key, self.label_key
        return [(e.get(label_key, ""), e.get(value_key, "")) for e in label if isinstance(e, dict)]

    def collect_schema(self, annotations):
        labels: dict[str, None] = {}
        for annotation in annotations:
            for element in annotation:
                labels.setdefault(self.label_of(element))
        return Schema(types=list(labels))
