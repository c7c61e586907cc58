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
    value_key = "entity"
    dedupe_on = ("entity", "entity_type")
    recommended_split_num = 6
    heading = "Entities"
    sentences = {
        "zh": "你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体，不存在的实体类型返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in named entity recognition. Please extract entities that match the schema definition from the input. Return an empty list if the entity type does not exist. Please respond in the format of a JSON string.",
    }


TASK = NERTask()
