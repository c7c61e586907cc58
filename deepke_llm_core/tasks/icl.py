"""The in-context-learning tasks (``ner re ee rte da``): their PromptCraft prompts, demonstrations and answers.

Each ICL task owns what differs between them, as an IE task does (DESIGN.md §2): its instruction variants (SPEC.md
§6.2, character for character), its query line, how one demonstration is rendered and validated, and a parser for
the answer format its instruction asks for, into the same typed extractions the IE tasks produce, so an ICL answer
is highlighted and scored like everything else. ``icl/prompts.py`` and ``icl/demos.py`` are the generic glue.

>>> ICL_TASKS["ner"].parse_answer("[{'E': 'person', 'W': 'Tom'}]")[0].describe()
'person: Tom'
>>> ICL_TASKS["rte"].parse_answer('[["Tom", "born in", "Paris"]]')[0].describe()
'Tom → born in → Paris'
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..records import Entity, Event, Extraction, Mention, Relation

__all__ = ["ICLTask", "ICL_TASKS", "INSTRUCTIONS", "UPSTREAM_NER_EN", "parse_literal"]

_RE_EN_GENERIC = ("You are a highly intelligent and accurate relation extraction(RE) system. Given a context, a pair of "
                  "head and tail entities in the context, your task is to extract the specific type of relationship "
                  "between the head and tail entities.\n")
UPSTREAM_NER_EN = _RE_EN_GENERIC  # upstream's bug: the NER "neither" instruction is the RE sentence (SPEC.md §10)

# (task, language) -> {variant: format string}; variants: domain_labels, domain, labels, plain, output.
INSTRUCTIONS: dict[tuple[str, str], dict[str, str]] = {
    ("ner", "en"): {
        "domain_labels": "You are a highly intelligent and accurate {0} domain Named-entity recognition(NER) system. You take Passage as input and your task is to recognize and extract specific types of {0} domain named entities in that given passage and classify into a set of following predefined entity types:\n{1}\n",
        "domain": "You are a highly intelligent and accurate {0} domain Named-entity recognition(NER) system. You take Passage as input and your task is to recognize and extract specific types of {0} domain named entities in that given passage and classify into a set of entity types.\n",
        "labels": "You are a highly intelligent and accurate Named-entity recognition(NER) system. You take Passage as input and your task is to recognize and extract specific types of named entities in that given passage and classify into a set of following predefined entity types:\n{0}\n",
        "plain": "You are a highly intelligent and accurate Named-entity recognition(NER) system. You take Passage as input and your task is to recognize and extract specific types of named entities in that given passage and classify into a set of entity types.\n",
        "output": "Your output format is only [{'E': type of entity from predefined entity types, 'W': entity in the input text},...] form, no other form.\n\n",
    },
    ("re", "en"): {
        "domain_labels": "You are a highly intelligent and accurate {0} domain relation extraction(RE) system. Given a context, a pair of head and tail entities in the context, your task is to extract the specific type of {0} domain relationship between the head and tail entities from candidate relations:\n{1}\n",
        "domain": "You are a highly intelligent and accurate {0} domain relation extraction(RE) system. Given a context, a pair of head and tail entities in the context, your task is to extract the specific type of {0} domain relationship between the head and tail entities.\n",
        "labels": "You are a highly intelligent and accurate relation extraction(RE) system. Given a context, a pair of head and tail entities in the context, your task is to extract the specific type of relationship between the head and tail entities from candidate relations:\n{0}\n",
        "plain": _RE_EN_GENERIC,
        "output": "Your output is only the relation type, no other words.\n\n",
    },
    ("ee", "en"): {
        "domain": "You are a highly intelligent and accurate {0} domain event extraction model. You take Passage as input and convert it into {0} domain events arguments.You can identify all events of target types mentioned in the sentence, and extract corresponding event arguments playing target roles.\n",
        "plain": "You are a highly intelligent and accurate event extraction model. You take Passage as input and convert it into events arguments. You can identify all events of target types mentioned in the sentence, and extract corresponding event arguments playing target roles.\n",
        "output": "Your output format is only [{event_type, arguments: [{role , argument}, ...]}, ...], no other form.\n\n",
    },
    ("rte", "en"): {
        "domain": "You are a highly intelligent and accurate {0} domain Resource Description Framework (RDF) data model. You take Passage as input and convert it into {0} domain RDF triples. A triple is a set of three entities that codifies a statement about semantic data in the form of subject-predicate-object expressions.\n",
        "plain": "You are a highly intelligent and accurate Resource Description Framework (RDF) data model. You take Passage as input and convert it into RDF triples. A triple is a set of three entities that codifies a statement about semantic data in the form of subject-predicate-object expressions.\n",
        "output": "Your output format is only [[ subject, predicate, object ], ...], no other form.\n\n",
    },
    ("da", "en"): {
        "labels": "One sample in relation extraction datasets consists of a relation, a context, a pair of head and tail entities in the context and their entity types. The head entity has the relation with the tail entity and entities are pre-categorized as the following types: \n{0}\n",
        "output": "",
    },
    ("ner", "ch"): {
        "domain_labels": "您是一个高度智能和精确的{0}域命名实体识别（NER）系统。您将文本作为输入，您的任务是识别和提取给定段落中的特定类型的{0}域名实体，并将其分类为一组预定义的实体类型：\n{1}\n",
        "domain": "您是一个高度智能和精确的{0}域命名实体识别（NER）系统。您将文本作为输入，您的任务是识别和提取给定文章中特定类型的{0}域命名实体，并将其分类为一组实体类型。\n",
        "labels": "您是一个高度智能和精确的命名实体识别（NER）系统。您将文本作为输入，您的任务是识别和提取给定段落中的特定类型的命名实体，并将其分类为一组预定义的实体类型：\n{0}\n",
        "plain": "您是一个高度智能和精确的命名实体识别（NER）系统。您将文本作为输入，您的任务是识别和提取给定文章中特定类型的命名实体，并将其分类为一组实体类型。\n",
        "output": "您输出的格式需要为：[{'E': 预先定义的实体类型, 'W': 输入文本中的实体},...]，没有其他格式要求。\n\n",
    },
    ("re", "ch"): {
        "domain_labels": "您是一个高度智能和精确的{0}域关系抽取（RE）系统。给定上下文以及上下文中包含的一对头实体和尾实体，您的任务是提取给定头实体和尾实体间特定类型的{0}域关系，候选的关系类型如下：\n{1}\n",
        "domain": "您是一个高度智能和精确的{0}域关系抽取（RE）系统。给定上下文以及上下文中包含的一对头实体和尾实体，您的任务是提取给定头实体和尾实体间特定类型的{0}域关系。\n",
        "labels": "您是一个高度智能和精确的关系抽取（RE）系统。给定上下文以及上下文中包含的一对头实体和尾实体，您的任务是提取给定头实体和尾实体间特定类型的关系，候选的关系类型如下：\n{0}\n",
        "plain": "您是一个高度智能和精确的关系抽取（RE）系统。给定上下文以及上下文中包含的一对头实体和尾实体，您的任务是提取给定头实体和尾实体间特定类型的关系。\n",
        "output": "您只需要输出关系的类型即可，不需要其他的文字输出。\n\n",
    },
    ("ee", "ch"): {
        "domain": "您是一个高度智能和精确的{0}域事件提取模型。您将文本作为输入并将其转换为{0}域事件参数。您可以识别句子中提到的所有目标类型的事件，并提取扮演目标角色的相应事件参数。\n",
        "plain": "您是一个高度智能和精确的事件提取模型。您将文本作为输入并将其转换为事件参数。您可以识别句子中提到的所有目标类型的事件，并提取扮演目标角色的相应事件参数。\n",
        "output": "您的输出全部为中文，且格式为：[{事件类型, 参数: [{角色, 参数内容}, ...]}, ...]，没有其他格式要求。\n\n",
    },
    ("rte", "ch"): {
        "domain": "您是一个高度智能和精确的{0}域资源描述框架（RDF）数据模型。您将文本作为输入，并将其转换为{0}域RDF三元组。三元组是由三个实体组成的集合，以主语-谓语-宾语表达式的形式对语义数据进行编码。\n",
        "plain": "您是一个高度智能和精确的资源描述框架（RDF）数据模型。您将文本作为输入，并将其转换为RDF三元组。三元组是由三个实体组成的集合，以主语-谓语-宾语表达式的形式对语义数据进行编码。\n",
        "output": "您输出的格式需要为：[[ 主语, 谓语, 宾语 ], ...]，没有其他格式要求。\n\n",
    },
    ("da", "ch"): {
        "labels": "关系提取数据集中的一个样本由关系、文本、文本中的一对头实体和尾实体及它们的实体类型组成。头实体与尾实体间存在关系，依次被预先分类为以下类型：\n{0}\n",
        "output": "",
    },
}
_JOIN = {"en": ", ", "ch": "，"}
PAIR_FIELDS = ("head_entity", "head_type", "tail_entity", "tail_type")


def parse_literal(text: str, lenient: bool = True) -> Any:
    """A JSON or Python-literal value from an answer (ICL answers often use single quotes); ``None`` if neither.

    ``lenient`` also takes the first bracketed value out of surrounding prose, and mends near-JSON with json-repair.
    """
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0].strip()
    for attempt in ([body] + ([body[body.find("["):body.rfind("]") + 1]] if lenient and "[" in body else [])):
        for loads in (json.loads, ast.literal_eval):
            try:
                return loads(attempt)
            except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
                continue
    if lenient and "[" in body:
        import json_repair  # maintained lenient parser; hand-rolled repair would miss cases

        try:
            value = json_repair.loads(body[body.find("["):])
        except (ValueError, RecursionError, MemoryError):
            return None
        return value if value not in ("", None) else None
    return None


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class ICLTask:
    """One ICL task: prompts (instruction, query, demonstrations) and the answer parser."""

    name: ClassVar[str] = ""
    needs_pair: ClassVar[bool] = False  # re: the head and tail entities and their types are part of the query
    needs_labels: ClassVar[bool] = False  # da: the entity types are part of the instruction
    label_variants: ClassVar[bool] = False  # ner, re: instructions with a list of candidate labels
    demo_layout: ClassVar[str] = ""  # the demonstrations file's layout (icl/demos.py reads each layout)

    def instruction(self, language: str, domain: str | None = None, labels: Sequence[str] | None = None) -> str:
        """The default instruction plus its output-format line (upstream's choice order: both, domain, labels, neither)."""
        table = INSTRUCTIONS[(self.name, language)]
        joined = _JOIN[language].join(labels) if labels else ""
        if self.needs_labels:
            if not labels:
                raise ValueError(f"task {self.name} needs --labels (the entity types, e.g. 'person, organization')")
            return table["labels"].format(joined) + table["output"]
        if self.label_variants and domain and labels:
            head = table["domain_labels"].format(domain, joined)
        elif domain:
            head = table["domain"].format(domain)
        elif self.label_variants and labels:
            head = table["labels"].format(joined)
        else:
            head = table["plain"]
        return head + table["output"]

    def query(self, language: str, text: str, pair: Mapping[str, str | None]) -> str:
        """The query part of the prompt."""
        return f"Input: {text}\nOutput: " if language == "en" else f"输入：{text}\n输出："

    def example_items(self, language: str, example: Mapping[str, Any]) -> dict[str, str]:
        """One demonstration as upstream renders it: ``key: value`` pairs run together."""
        en = language == "en"
        return {("Input" if en else "输入"): example["input"], ("\nOutput" if en else "\n输出"): str(example["output"])}

    def examples_header(self, language: str, examples: Sequence[Mapping[str, Any]]) -> str:
        return "Examples" if language == "en" else "示例"

    def parse_answer(self, text: Any, lenient: bool = True, pair: Mapping[str, str | None] | None = None
                     ) -> list[Extraction] | None:
        """Typed extractions from an answer in this task's format, or ``None`` when it is not in it."""
        raise NotImplementedError

    def gold(self, record: Mapping[str, Any]) -> list[Extraction]:
        """Typed gold extractions from a raw record (``entity``/``relation``/``event`` fields), for scoring."""
        from . import get_task

        for task_name, field_name in (("NER", "entity"), ("RE", "relation"), ("EE", "event")):
            if isinstance(record.get(field_name), list):
                return get_task(task_name).gold_tuples(record[field_name])
        return []


class NERICL(ICLTask):
    name = "ner"
    label_variants = True
    demo_layout = "samples"

    def parse_answer(self, text, lenient=True, pair=None):
        value = parse_literal(text, lenient) if isinstance(text, str) else None
        if not isinstance(value, list):
            return None
        found = []
        for item in value:
            if isinstance(item, dict) and (word := _str(item.get("W"))) and (kind := _str(item.get("E"))):
                found.append(Entity(Mention(word), kind))
        return found


class REICL(ICLTask):
    name = "re"
    needs_pair = True
    label_variants = True
    demo_layout = "pairs"

    def query(self, language, text, pair):
        if language == "en":
            return (f"Context: {text}\nThe relation between ({pair['head_type']}) '{pair['head_entity']}' and "
                    f"({pair['tail_type']}) '{pair['tail_entity']}' in the context is: ")
        return (f"上下文：{text}\n上下文中头实体（{pair['head_type']}）‘{pair['head_entity']}’和尾实体（{pair['tail_type']}）"
                f"‘{pair['tail_entity']}’之间的关系类型是：")

    def example_items(self, language, example):
        if language == "en":
            out = (f"The relation between ({example['head_type']}) '{example['head_entity']}' and ({example['tail_type']}) "
                   f"'{example['tail_entity']}' in the context is: {example['relation']}")
            return {"Context": example["context"], "Output": out}
        out = (f"上下文头实体（{example['head_type']}）‘{example['head_entity']}’和尾实体（{example['tail_type']}）"
               f"‘{example['tail_entity']}’间的关系类型是： {example['relation']}")
        return {"上下文": example["context"], "输出": out}

    def parse_answer(self, text, lenient=True, pair=None):
        """The answer is a relation label for the pair the query names (its first line, quotes and period stripped)."""
        label = _str(text.strip().splitlines()[0].strip(" \"'“”‘’.。")) if isinstance(text, str) and text.strip() else None
        if label is None or not pair or not pair.get("head_entity") or not pair.get("tail_entity"):
            return None if label is None else []
        return [Relation(Mention(pair["head_entity"]), label, Mention(pair["tail_entity"]),
                         pair.get("head_type") or "", pair.get("tail_type") or "")]

    def gold(self, record):
        if _str(record.get("relation")) and _str(record.get("head_entity")) and _str(record.get("tail_entity")):
            return [Relation(Mention(record["head_entity"]), record["relation"], Mention(record["tail_entity"]))]
        return super().gold(record)


class EEICL(ICLTask):
    name = "ee"
    demo_layout = "events"

    def parse_answer(self, text, lenient=True, pair=None):
        value = parse_literal(text, lenient) if isinstance(text, str) else None
        if not isinstance(value, list):
            return None
        found = []
        for item in value:
            if not isinstance(item, dict) or not (kind := _str(item.get("event_type"))):
                continue
            pairs = [(a["argument"], a["role"]) for a in item.get("arguments") or []
                     if isinstance(a, dict) and _str(a.get("argument")) and _str(a.get("role"))]
            found.append(Event.of(kind, _str(item.get("trigger")) or "", pairs))
        return found


class RTEICL(ICLTask):
    name = "rte"
    demo_layout = "triples"

    def parse_answer(self, text, lenient=True, pair=None):
        value = parse_literal(text, lenient) if isinstance(text, str) else None
        if not isinstance(value, list):
            return None
        return [Relation(Mention(h), p, Mention(t)) for item in value
                if isinstance(item, (list, tuple)) and len(item) == 3 and all(_str(x) for x in item)
                for h, p, t in [[x.strip() for x in item]]]

    def gold(self, record):
        labels = record.get("labels")
        if isinstance(labels, list):
            return [Relation(Mention(h), p, Mention(t)) for h, p, t in (x for x in labels if isinstance(x, list) and len(x) == 3)]
        return super().gold(record)


class DAICL(ICLTask):
    """Data augmentation: the model writes new relation samples; each parsed sample is a relation in its context."""

    name = "da"
    needs_labels = True
    demo_layout = "pairs"
    _FIELDS = {"en": (("Relation", "relation"), ("Context", "context"), ("Head Entity", "head_entity"),
                      ("Head Type", "head_type"), ("Tail Entity", "tail_entity"), ("Tail Type", "tail_type")),
               "ch": (("关系", "relation"), ("上下文", "context"), ("头实体", "head_entity"), ("头实体类型", "head_type"),
                      ("尾实体", "tail_entity"), ("尾实体类型", "tail_type"))}

    def query(self, language, text, pair):
        return f"Generate more samples for the relation '{text}':\n" if language == "en" else f"请为关系‘{text}’生成更多的样例数据：\n"

    def example_items(self, language, example):
        return {("\n" if k else "") + label: example[key] for k, (label, key) in enumerate(self._FIELDS[language])}

    def examples_header(self, language, examples):
        rel = examples[0]["relation"]
        return f"Here are some samples for relation '{rel}'" if language == "en" else f"这里有一些关于关系‘{rel}’的样本"

    def parse_answer(self, text, lenient=True, pair=None):
        """Generated samples as relations (head and tail must occur in the sample's own context)."""
        if not isinstance(text, str):
            return None
        found = []
        for language in ("en", "ch"):
            labels = "|".join(re.escape(label) for label, _ in sorted(self._FIELDS[language], key=lambda x: -len(x[0])))
            sample: dict[str, str] = {}
            for label, value in re.findall(rf"({labels})\s*[:：]\s*(.*?)(?=(?:{labels})\s*[:：]|\n|$)", text):
                key = dict(self._FIELDS[language])[label]
                if key in sample:  # a field seen again starts the next sample
                    found.append(sample)
                    sample = {}
                sample[key] = value.strip()
            if sample:
                found.append(sample)
        return [Relation(Mention(s["head_entity"]), s["relation"], Mention(s["tail_entity"]), s.get("head_type", ""),
                         s.get("tail_type", "")) for s in found
                if all(s.get(k) for k in ("relation", "head_entity", "tail_entity", "context"))
                and s["head_entity"] in s["context"] and s["tail_entity"] in s["context"]]


ICL_TASKS: dict[str, ICLTask] = {t.name: t for t in (NERICL(), REICL(), EEICL(), RTEICL(), DAICL())}
