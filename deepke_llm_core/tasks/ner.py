"""Named entity recognition: ``{"entity_type": [entity, ...]}`` per schema type.

>>> from deepke_llm_core.tasks.ner import TASK
>>> TASK.render_output(["人物", "组织机构"], TASK.label_dict([{"entity": "青岛海牛队", "entity_type": "组织机构"}], "", None), "")
{'人物': [], '组织机构': ['青岛海牛队']}
"""

from __future__ import annotations

from .base import LabelListTask

__all__ = ["TASK", "NERTask"]


class NERTask(LabelListTask):
    name = "NER"
    annotation_field = "entity"
    fields = ("entity", "entity_type")
    label_key = "entity_type"
    dedupe_on = ("entity", "entity_type")
    sentences = {
        "zh": "你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体，不存在的实体类型返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in named entity recognition. Please extract entities that match the schema definition from the input. Return an empty list if the entity type does not exist. Please respond in the format of a JSON string.",
    }

    def label_dict(self, annotation, text, opts):
        # Annotation order: upstream computed a text-position order and then discarded it (SPEC §1.11).
        labels: dict[str, list[str]] = {}
        for e in annotation:
            labels.setdefault(e["entity_type"], []).append(e["entity"])
        return labels

    def render_output(self, chunk, labels, text):
        return {t: labels.get(t, []) for t in chunk}

    def parse_output(self, obj, rel_keys="any"):
        return [(v, t) for t, values in obj.items() if isinstance(values, list) for v in values if isinstance(v, str)]

    def gold_tuples(self, label):
        return [(e.get("entity", ""), e.get("entity_type", "")) for e in label if isinstance(e, dict)]


TASK = NERTask()
