"""Typed triple (SPO) extraction, the InstructIE record format.

Schema items are ``"subjectType_predicate_objectType"`` strings (schema line 1); the output is keyed by
predicate. Upstream overwrote a predicate's list when two items of one chunk shared it (a positive was lost,
SPEC §1.11); we merge the lists instead.
"""

from __future__ import annotations

from functools import lru_cache

from ..records import Mention, Relation
from ..schema import Schema
from .base import STRING, LabelListTask, object_schema
from .re import RelationScoreItems, relation_tuples

__all__ = ["TASK", "SPOTask", "split_spo"]

LEGACY_ZH = "你是专门进行SPO三元组抽取的专家。请从input中抽取出符合schema定义的spo关系三元组，不存在的关系返回空列表。请按照JSON字符串的格式回答。"


@lru_cache(maxsize=65536)
def split_spo(item: str) -> tuple[str, str, str]:
    """``"人物_毕业院校_学校"`` -> ``("人物", "毕业院校", "学校")``; middle pieces re-joined with ``_``."""
    pieces = item.split("_")
    if len(pieces) < 3:
        raise ValueError(f"SPO schema item {item!r} is not 'subjectType_predicate_objectType'")
    return pieces[0], "_".join(pieces[1:-1]), pieces[-1]


class SPOTask(RelationScoreItems, LabelListTask):
    name = "SPO"
    annotation_field = "relation"
    fields = ("head", "head_type", "relation", "tail", "tail_type")
    dedupe_on = ("head", "relation", "tail")
    label_key = "relation"
    heading = "Relations"
    sentences = {
        "zh": "你是专门进行关系抽取的专家。请从input中抽取出符合schema定义的关系三元组，不存在的关系返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in relationship extraction. Please extract relationship triples that match the schema definition from the input. Return an empty list for relationships that do not exist. Please respond in the format of a JSON string.",
    }

    def instruction(self, language, opts=None):
        if opts is not None and opts.legacy_spo_instruction:
            if language != "zh":
                raise ValueError("the legacy SPO instruction exists only in Chinese (--language zh)")
            return LEGACY_ZH
        return super().instruction(language, opts)

    def label_of(self, element):
        return f"{element['head_type']}_{element['relation']}_{element['tail_type']}"

    def schema_entry(self, item, split):
        subject_type, predicate, object_type = split_spo(item)
        return {"subject_type": subject_type, "predicate": predicate, "object_type": object_type}

    def label_dict(self, annotation, text, opts):
        labels: dict[str, list[dict]] = {}
        for e in annotation:
            labels.setdefault(self.label_of(e), []).append({"subject": e["head"], "object": e["tail"]})
        return labels

    def render_output(self, chunk, labels, text):
        out: dict[str, list[dict]] = {}
        for item in chunk:
            predicate = split_spo(item)[1]
            out[predicate] = out.get(predicate, []) + labels.get(item, [])
        return out

    def collect_schema(self, annotations):
        items = super().collect_schema(annotations).types
        return Schema(types=items, roles=list(dict.fromkeys(split_spo(i)[1] for i in items)))

    def output_schema(self, entries, span=STRING):
        pair = object_schema({"subject": span, "object": span})
        return object_schema({e["predicate"]: {"type": "array", "items": pair} for e in entries})

    def parse_output(self, obj, rel_keys="any"):
        return relation_tuples(obj, rel_keys)

    def gold_tuples(self, label):
        return [Relation(Mention(e.get("head", "")), e.get("relation", ""), Mention(e.get("tail", "")),
                         e.get("head_type", ""), e.get("tail_type", "")) for e in label if isinstance(e, dict)]


TASK = SPOTask()
