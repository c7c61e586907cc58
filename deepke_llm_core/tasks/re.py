"""Relation extraction: ``{"relation": [{"subject": h, "object": t}, ...]}`` per schema relation.

Upstream DeepKE writes ``head``/``tail``; IEPile data and OneKE use ``subject``/``object``. We write
``subject``/``object`` by default (``ConvertOptions.relation_keys``) and read both when scoring.
"""

from __future__ import annotations

from ..records import Mention, Relation
from .base import STRING, LabelListTask, object_schema

__all__ = ["TASK", "RETask", "RelationScoreItems", "pair_from"]


def pair_from(element: dict, rel_keys: str) -> tuple[object, object]:
    """Head and tail of a predicted relation object under the chosen key convention.

    ``head_tail`` reproduces upstream DeepKE's scorer (which only knew ``head``/``tail``); ``any`` reads
    ``subject``/``object`` and falls back to ``head``/``tail``.
    """
    if rel_keys == "head_tail":
        return element.get("head", ""), element.get("tail", "")
    if rel_keys == "subject_object":
        return element.get("subject", ""), element.get("object", "")
    head = element["subject"] if "subject" in element else element.get("head", "")
    tail = element["object"] if "object" in element else element.get("tail", "")
    return head, tail


def _relation_pairs(obj: dict, rel_keys: str) -> list[tuple[str, tuple[str, str]]]:
    """``(relation, (head, tail))`` for every well-formed element of ``{relation: [objects]}``. (Exact ``type``
    checks: the answer was parsed from JSON, which makes no subclasses; ``evaluate`` calls this once per record.)"""
    found = []
    for relation, values in obj.items():
        if type(values) is not list or not values:
            continue
        for element in values:
            if type(element) is not dict:
                continue
            head, tail = pair_from(element, rel_keys)
            if type(head) is str and type(tail) is str:
                found.append((relation, (head, tail)))
    return found


def relation_tuples(obj: dict, rel_keys: str) -> list[Relation]:
    """A :class:`Relation` for every well-formed element of ``{relation: [objects]}``."""
    return [Relation(Mention(head), relation, Mention(tail)) for relation, (head, tail) in _relation_pairs(obj, rel_keys)]


def _gold_relation_pairs(label: list) -> list[tuple[str, tuple[str, str]]]:
    """``(relation, (head, tail))`` of every annotation of a label list (RE and SPO labels alike)."""
    return [(e.get("relation", ""), (e.get("head", ""), e.get("tail", ""))) for e in label if isinstance(e, dict)]


class RelationScoreItems:
    """``Task.score_answer``/``score_gold`` for relation tasks (RE, SPO): ``(relation, (head, tail))``, equal
    exactly when the Relations are (head and tail types are not compared). Mixed in before ``LabelListTask``."""

    def score_answer(self, obj: dict, rel_keys: str = "any") -> dict[str, list[tuple[str, tuple[str, str]]]]:
        return {"": _relation_pairs(obj, rel_keys)}

    def score_gold(self, label: list) -> dict[str, list[tuple[str, tuple[str, str]]]]:
        return {"": _gold_relation_pairs(label)}


class RETask(RelationScoreItems, LabelListTask):
    name = "RE"
    annotation_field = "relation"
    fields = ("head", "relation", "tail")
    label_key = "relation"
    dedupe_on = ("head", "relation", "tail")
    heading = "Relations"
    sentences = {
        "zh": "你是专门进行关系抽取的专家。请从input中抽取出符合schema定义的关系三元组，不存在的关系返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in relationship extraction. Please extract relationship triples that match the schema definition from the input. Return an empty list for relationships that do not exist. Please respond in the format of a JSON string.",
    }

    def universe(self, schema):
        return schema.roles

    def label_dict(self, annotation, text, opts):
        head_key, tail_key = opts.relation_keys
        labels: dict[str, list[dict]] = {}
        for e in annotation:
            labels.setdefault(e["relation"], []).append({head_key: e["head"], tail_key: e["tail"]})
        return labels

    def render_output(self, chunk, labels, text):
        return {r: labels.get(r, []) for r in chunk}

    def collect_schema(self, annotations):
        schema = super().collect_schema(annotations)
        return type(schema)(roles=schema.types)

    def output_schema(self, entries, span=STRING):
        pair = object_schema({"subject": span, "object": span})
        return object_schema({r: {"type": "array", "items": pair} for r in entries})

    def parse_output(self, obj, rel_keys="any"):
        return relation_tuples(obj, rel_keys)

    def gold_tuples(self, label):
        return [Relation(Mention(head), relation, Mention(tail)) for relation, (head, tail) in _gold_relation_pairs(label)]


TASK = RETask()
