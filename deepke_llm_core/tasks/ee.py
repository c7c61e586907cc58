"""Event extraction: event type, trigger and arguments per schema event type.

Output for a schema item ``{"event_type": t, "trigger": true, "arguments": [roles]}`` is
``{t: [{"trigger": w, "arguments": {role: value | [values] | "NAN"}}]}`` (SPEC §1.11). Roles inside an item
follow the schema file's order in sorted mode (upstream iterated a set, so its order was not reproducible;
SPEC §1.8), and are shuffled under ``--random_sort``.
"""

from __future__ import annotations

from ..io import DataError
from ..records import Event
from ..schema import Schema
from .base import STRING, Task, binomial, object_schema, order_items, require_str, sample_subset, span_or

__all__ = ["TASK", "EETask", "read_events", "event_labels", "format_values", "event_tuples"]


def read_events(record: dict, schema: Schema | None, known_types: set[str] | None) -> list | None:
    """Check the ``event`` list of a record; ``None`` when absent. Unknown types or roles are errors."""
    if "event" not in record:
        return None
    events = record["event"]
    if not isinstance(events, list):
        raise DataError(None, None, "event", f"expected a list, got {type(events).__name__}")
    for i, event in enumerate(events):
        where = f"event[{i}]"
        if not isinstance(event, dict):
            raise DataError(None, None, where, "expected an object with event_type, event_trigger, arguments")
        event_type = require_str(event, "event_type", where)
        require_str(event, "event_trigger", where)
        if known_types is not None and event_type not in known_types:
            raise DataError(None, None, f"{where}.event_type", f"{event_type!r} is not in the schema")
        arguments = event.get("arguments", [])
        if not isinstance(arguments, list):
            raise DataError(None, None, f"{where}.arguments", f"expected a list, got {type(arguments).__name__}")
        allowed = schema.type_roles.get(event_type) if schema is not None else None
        for j, argument in enumerate(arguments):
            at = f"{where}.arguments[{j}]"
            if not isinstance(argument, dict):
                raise DataError(None, None, at, "expected an object with argument and role")
            require_str(argument, "argument", at)
            role = require_str(argument, "role", at)
            if allowed is not None and role not in allowed:
                raise DataError(None, None, f"{at}.role", f"{role!r} is not a role of {event_type!r} in the schema")
    return events


def event_labels(annotation: list) -> dict[str, list[tuple[str, dict[str, list[str]]]]]:
    """``{type: [(trigger, {role: [distinct values]})]}``; empty events dropped, empty trigger -> ``NAN``."""
    labels: dict[str, list] = {}
    for event in annotation:
        values: dict[str, list[str]] = {}
        for argument in event.get("arguments", []):
            if argument["argument"]:
                bucket = values.setdefault(argument["role"], [])
                if argument["argument"] not in bucket:
                    bucket.append(argument["argument"])
        trigger = event["event_trigger"]
        if not trigger and not values:
            continue
        labels.setdefault(event["event_type"], []).append((trigger or "NAN", values))
    return labels


def format_values(values: list[str] | None) -> str | list[str]:
    """One value as a string, several as a list, none as ``"NAN"``."""
    if not values:
        return "NAN"
    return values[0] if len(values) == 1 else list(values)


def render_events(event_type: str, roles, with_trigger: bool, labels: dict, text: str) -> list[dict]:
    """The list of event objects of one type, stably sorted by the trigger's position in the text."""
    found = []
    for trigger, values in labels.get(event_type, []):
        arguments = {role: format_values(values.get(role)) for role in roles}
        if all(v == "NAN" for v in arguments.values()):
            arguments = {}
        if with_trigger:
            found.append((text.find(trigger), {"trigger": trigger, "arguments": arguments}))
        elif arguments:
            found.append((-1, {"arguments": arguments}))
    found.sort(key=lambda pair: pair[0])
    return [obj for _, obj in found]


def event_tuples(obj: dict, flat_ok: bool = False) -> list[Event]:
    """An :class:`Event` for every well-formed event object of the answer; bad elements are skipped.

    ``flat_ok`` also accepts IEPile's flat role dicts ``{role: value}`` (EEA) with an empty trigger.
    """
    found = []
    for event_type, events in obj.items():
        if not isinstance(events, list):
            continue
        for event in events:
            if not isinstance(event, dict):
                continue
            if isinstance(event.get("arguments"), dict):
                trigger, arguments = event.get("trigger", ""), event["arguments"]
            elif flat_ok and "arguments" not in event:
                trigger, arguments = event.get("trigger", ""), {k: v for k, v in event.items() if k != "trigger"}
            else:
                continue
            if not isinstance(trigger, str):
                continue
            pairs = []
            for role, value in arguments.items():
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str) and v != "NAN":
                        pairs.append((v, role))
            found.append(Event.of(event_type, trigger, pairs))
    return found


def annotated_roles(annotation: list, event_type: str) -> list[str]:
    return list(dict.fromkeys(a["role"] for e in annotation if e["event_type"] == event_type for a in e.get("arguments", [])))


def order_roles(roles: list[str], schema_roles: list[str], opts, rng) -> tuple[str, ...]:
    if opts.random_sort:
        return tuple(order_items(roles, True, rng))
    rank = {r: i for i, r in enumerate(schema_roles)}
    return tuple(sorted(roles, key=lambda r: rank.get(r, len(rank))))


def sample_roles(schema_roles: list[str], annotated: list[str], p: float, rng) -> list[str]:
    """Unannotated roles sampled at rate p (at least one if nothing is annotated), then the annotated ones.

    ``p == 0`` (positives only) keeps every role of the event type, as upstream does: there is nothing to sample
    then, and an event type asked with some of its roles would teach the model to drop the others.
    """
    rest = [r for r in schema_roles if r not in annotated]
    if p == 0:
        return rest + annotated
    n = binomial(rng, len(schema_roles), p)
    if not annotated:
        n = max(n, 1)
    return sample_subset(rest, min(n, len(rest)), rng) + annotated


class EETask(Task):
    name = "EE"
    annotation_field = "event"
    heading = "Events"
    sentences = {
        "zh": "你是专门进行事件提取的专家。请从input中抽取出符合schema定义的事件，不存在的事件返回空列表，不存在的论元返回NAN，如果论元存在多值请返回列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in event extraction. Please extract events from the input that conform to the schema definition. Return an empty list for events that do not exist, and return NAN for arguments that do not exist. If an argument has multiple values, please return a list. Respond in the format of a JSON string.",
    }

    def event_types(self, schema: Schema) -> list[str]:
        return schema.types or list(schema.type_roles)

    def read_annotation(self, record, schema):
        known = None if schema is None else set(self.event_types(schema)) | set(schema.type_roles)
        return read_events(record, schema, known)

    def train_items(self, annotation, schema, opts, rng):
        universe = self.event_types(schema)
        positives = list(dict.fromkeys(e["event_type"] for e in annotation))
        p = opts.neg_schema
        items = []
        for event_type in positives:
            roles = sample_roles(schema.type_roles.get(event_type, []), annotated_roles(annotation, event_type), p, rng)
            items.append((event_type, order_roles(roles, schema.type_roles.get(event_type, []), opts, rng)))
        if p == 0:
            if not items:
                return None
        else:
            negatives = [t for t in universe if t not in positives]
            n = binomial(rng, len(universe), p)
            if not positives:
                n = max(n, 1)
            for event_type in sample_subset(negatives, min(n, len(negatives)), rng):
                schema_roles = schema.type_roles.get(event_type, [])
                k = min(max(binomial(rng, len(schema_roles), p), 1), len(schema_roles))
                items.append((event_type, order_roles(sample_subset(schema_roles, k, rng), schema_roles, opts, rng)))
        return order_items(items, opts.random_sort, rng, key=lambda item: item[0])

    def test_items(self, annotation, schema):
        types = list(schema.type_roles) or schema.types
        return [(t, tuple(schema.type_roles.get(t, []))) for t in types]

    def schema_entry(self, item, split):
        return {"event_type": item[0], "trigger": True, "arguments": list(item[1])}

    def label_dict(self, annotation, text, opts):
        return event_labels(annotation)

    def render_output(self, chunk, labels, text):
        return {item[0]: render_events(item[0], item[1], True, labels, text) for item in chunk}

    def collect_schema(self, annotations):
        type_roles: dict[str, dict[str, None]] = {}
        for annotation in annotations:
            for event in annotation:
                roles = type_roles.setdefault(event["event_type"], {})
                for argument in event.get("arguments", []):
                    roles.setdefault(argument["role"])
        all_roles = list(dict.fromkeys(r for roles in type_roles.values() for r in roles))
        return Schema(types=list(type_roles), roles=all_roles, type_roles={t: list(r) for t, r in type_roles.items()})

    def output_schema(self, entries, span=STRING):
        """Events with a trigger (``"NAN"`` when the annotation had none) and optional role values (``"NAN"`` for
        an absent argument, a list for several); an entry without a trigger (EEA's test items) asks for arguments only."""
        value = {"anyOf": [span_or(span, "NAN"), {"type": "array", "items": span}]}

        def event(entry: dict) -> dict:
            arguments = object_schema({r: value for r in entry["arguments"]}, required=False)
            if not entry.get("trigger"):
                return object_schema({"arguments": arguments})
            return object_schema({"trigger": span_or(span, "NAN"), "arguments": arguments})

        return object_schema({e["event_type"]: {"type": "array", "items": event(e)} for e in entries})

    def parse_output(self, obj, rel_keys="any"):
        return event_tuples(obj)

    def gold_tuples(self, label):
        return [Event.of(e.get("event_type", ""), e.get("event_trigger", ""),
                         [(a.get("argument", ""), a.get("role", "")) for a in e.get("arguments", []) if isinstance(a, dict)])
                for e in label if isinstance(e, dict)]

    def score_levels(self, extractions):
        """Two levels, as upstream scores events: ``(type, trigger)`` and ``(type, argument, role)``."""
        return {
            "event_": [(e.type, Event(e.event_type, e.trigger)) for e in extractions],
            "argument_": [(e.type, argument) for e in extractions for argument in e.arguments],
        }


TASK = EETask()
