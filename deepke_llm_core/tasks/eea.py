"""Event argument extraction: the event types and triggers are given, the arguments are asked for.

Train schema items carry the trigger words present in the text (``"trigger": [...]``); test items do not
(SPEC §1.6). Scoring accepts both the wrapped ``{"trigger", "arguments"}`` objects DeepKE writes and IEPile's
flat role dicts, and, unlike upstream, scores the event level against the gold triggers instead of blanks.
"""

from __future__ import annotations

from .base import binomial, order_items, sample_subset
from .ee import EETask, annotated_roles, event_tuples, order_roles, render_events, sample_roles

__all__ = ["TASK", "EEATask"]


class EEATask(EETask):
    name = "EEA"
    sentences = {
        "zh": "你是专门进行事件论元提取的专家。请从input中抽取出符合schema定义的事件论元及论元角色，不存在的论元返回NAN或空字典，如果论元存在多值请返回列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in event argument extraction. Please extract event arguments and their roles from the input that conform to the schema definition, which already includes event trigger words. If an argument does not exist, return NAN or an empty dictionary. Please respond in the format of a JSON string.",
    }

    def train_items(self, annotation, schema, opts, rng):
        if not annotation:  # upstream drops EEA records without events at read time
            return None
        p = opts.neg_schema
        items = []
        for event_type in dict.fromkeys(e["event_type"] for e in annotation):
            schema_roles = schema.type_roles.get(event_type, [])
            roles = order_roles(sample_roles(schema_roles, annotated_roles(annotation, event_type), p, rng), schema_roles, opts, rng)
            # One trigger per event, duplicates kept, as in upstream's shipped EEA data; an empty trigger stays
            # (upstream lists it as "" and answers it as "NAN", like EE), so its event's arguments are asked for.
            triggers = [e["event_trigger"] for e in annotation if e["event_type"] == event_type]
            if p == 0:  # positives only: every distinct trigger, as upstream
                chosen = list(dict.fromkeys(triggers))
            else:
                chosen = sample_subset(triggers, min(max(binomial(rng, len(triggers), p), 1), len(triggers)), rng)
            items.append((event_type, tuple(chosen), roles))
        return order_items(items, opts.random_sort, rng, key=lambda item: item[0])

    def test_items(self, annotation, schema):
        if annotation is None:  # no gold events: ask about every event type of the schema
            types = list(schema.type_roles) or schema.types
        elif not annotation:
            return None
        else:
            types = list(dict.fromkeys(e["event_type"] for e in annotation))
        return [(t, (), tuple(schema.type_roles.get(t, []))) for t in types]

    def schema_entry(self, item, split):
        if split == "test":
            return {"event_type": item[0], "arguments": list(item[2])}
        return {"event_type": item[0], "trigger": list(item[1]), "arguments": list(item[2])}

    def render_output(self, chunk, labels, text):
        return {item[0]: render_events(item[0], item[2], bool(item[1]), labels, text) for item in chunk}

    def parse_output(self, obj, rel_keys="any"):
        return event_tuples(obj, flat_ok=True)


TASK = EEATask()
