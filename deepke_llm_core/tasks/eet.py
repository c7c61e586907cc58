"""Event type + trigger extraction: ``{"event_type": [trigger, ...]}`` per schema type."""

from __future__ import annotations

from ..records import Event, Mention
from .base import LabelListTask
from .ee import read_events

__all__ = ["TASK", "EETTask"]


class EETTask(LabelListTask):
    name = "EET"
    annotation_field = "event"
    label_key = "event_type"
    value_key = "event_trigger"
    heading = "Events (type: trigger)"
    sentences = {
        "zh": "你是专门进行事件提取的专家。请从input中抽取出符合schema定义的事件类型及事件触发词，不存在的事件返回空列表。请按照JSON字符串的格式回答。",
        "en": "You are an expert in event extraction. Please extract event types and event trigger words from the input that conform to the schema definition. Return an empty list for non-existent events. Please respond in the format of a JSON string.",
    }

    def make(self, value, label):
        return Event(label, Mention(value))

    def read_annotation(self, record, schema):
        return read_events(record, schema, known_types=None if schema is None else set(schema.types))


TASK = EETTask()
