"""Entity knowledge (KG) extraction: ``{entity_type: {entity: {attribute: value | [values]}}}``.

Upstream scored KG by comparing differently shaped tuples, so F1 was always 0 (SPEC §2.3); we flatten the
output into ``(entity, attribute, value)`` triples and compare them with the gold ``(head, relation, tail)``.
"""

from __future__ import annotations

from ..io import DataError
from ..records import Attribute, Mention
from ..schema import Schema
from .base import STRING, Task, binomial, by_position, object_schema, order_items, require_str, sample_subset

__all__ = ["TASK", "KGTask"]

_EMPTY_VALUES = {"无", "nan"}


class KGTask(Task):
    name = "KG"
    annotation_field = "relation"
    recommended_split_num = 1
    heading = "Entity attributes (entity \u2192 attribute \u2192 value)"
    sentences = {
        "zh": "你是一个图谱实体知识结构化专家。根据输入实体类型(entity type)的schema描述，从文本中抽取出相应的实体实例和其属性信息，不存在的属性不输出, 属性存在多值就返回列表，并输出为可解析的json格式。",
        "en": "You are an expert in structured knowledge systems for graph entities. Based on the schema description of the input entity type, you extract the corresponding entity instances and their attribute information from the text. Attributes that do not exist should not be output. If an attribute has multiple values, a list should be returned. The results should be output in a parsable JSON format.",
    }

    @staticmethod
    def attributes(schema: Schema) -> list[str]:
        return schema.roles or list(dict.fromkeys(a for attrs in schema.type_roles.values() for a in attrs))

    def read_annotation(self, record, schema):
        if "relation" not in record:
            return None
        values = record["relation"]
        if not isinstance(values, list):
            raise DataError(None, None, "relation", f"expected a list, got {type(values).__name__}")
        known = set(self.attributes(schema)) if schema is not None else None
        for i, element in enumerate(values):
            where = f"relation[{i}]"
            if not isinstance(element, dict):
                raise DataError(None, None, where, "expected an object with head, relation, tail")
            require_str(element, "head", where)
            relation = require_str(element, "relation", where)
            require_str(element, "tail", where)
            if known is not None and relation not in known:
                raise DataError(None, None, f"{where}.relation", f"{relation!r} is not an attribute in the schema")
        return values

    def train_items(self, annotation, schema, opts, rng):
        if not schema.type_roles:
            raise ValueError("a KG schema needs line 3: {entity_type: [attributes]}")
        entity_type = next(iter(schema.type_roles))  # upstream: training uses the first entity type only
        universe = self.attributes(schema)
        positives = list(dict.fromkeys(e["relation"] for e in annotation))
        if opts.neg_schema == 0:
            if not positives:
                return None
            attributes = positives
        else:
            # Positive attributes are always kept (upstream could drop them when neg_schema < 1, SPEC §1.14).
            negatives = [a for a in universe if a not in positives]
            n = min(max(binomial(rng, len(universe), opts.neg_schema), 1), len(negatives))
            attributes = sample_subset(negatives, n, rng) + positives
        return [(entity_type, tuple(order_items(attributes, opts.random_sort, rng)))]

    def test_items(self, annotation, schema):
        return [(t, tuple(attrs)) for t, attrs in schema.type_roles.items()]

    def schema_entry(self, item, split):
        return {"entity_type": item[0], "attributes": list(item[1])}

    def label_dict(self, annotation, text, opts):
        heads: dict[str, dict[str, list[str]]] = {}
        for e in annotation:
            heads.setdefault(e["head"], {}).setdefault(e["relation"], []).append(e["tail"])
        return [(head, {a: by_position(text, tails) for a, tails in heads[head].items()}) for head in by_position(text, heads)]

    def render_output(self, chunk, labels, text):
        out = {}
        for entity_type, attributes in chunk:
            out[entity_type] = {
                head: {a: (tails[0] if len(tails) == 1 else tails) for a in attributes if (tails := found.get(a))}
                for head, found in labels
            }
        return out

    def collect_schema(self, annotations):
        by_type: dict[str, dict[str, None]] = {}
        spo: dict[str, None] = {}
        for annotation in annotations:
            for e in annotation:
                head_type = e.get("head_type") or "entity"
                by_type.setdefault(head_type, {}).setdefault(e["relation"])
                spo.setdefault(f"{head_type}_{e['relation']}_{e.get('tail_type') or 'entity'}")
        roles = list(dict.fromkeys(a for attrs in by_type.values() for a in attrs))
        return Schema(types=list(spo), roles=roles, type_roles={t: list(a) for t, a in by_type.items()})

    def output_schema(self, entries, span=STRING):
        """``{entity_type: {entity: {attribute: value | [values]}}}``: entities (keys) and values are extractive."""
        value = {"anyOf": [span, {"type": "array", "items": span}]}
        names = {} if span == STRING else {"propertyNames": span}
        entity = lambda e: {"type": "object", **names,
                            "additionalProperties": object_schema({a: value for a in e["attributes"]}, required=False)}
        return object_schema({e["entity_type"]: entity(e) for e in entries})

    def parse_output(self, obj, rel_keys="any"):
        found = []
        for entity_type, entities in obj.items():
            if not isinstance(entities, dict):
                continue
            for entity, attributes in entities.items():
                if not isinstance(attributes, dict):
                    continue
                for attribute, value in attributes.items():
                    for v in value if isinstance(value, list) else [value]:
                        if isinstance(v, str) and v.lower() not in _EMPTY_VALUES:
                            found.append(Attribute(Mention(entity), attribute, Mention(v), entity_type))
        return found

    def gold_tuples(self, label):
        return [Attribute(Mention(e.get("head", "")), e.get("relation", ""), Mention(e.get("tail", "")), e.get("head_type", ""))
                for e in label if isinstance(e, dict)]


TASK = KGTask()
