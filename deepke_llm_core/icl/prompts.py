"""In-context-learning prompts: instruction + demonstrations + query, exactly as upstream's ``PromptCraft``.

Why exact strings: published ICL numbers (and users' expectations) come from these prompts, so every constant is
SPEC.md §6.2 character for character, and a test compares them with the literals there. The only departure is
a fix (SPEC.md §10): upstream's default English NER instruction, when neither ``domain`` nor ``labels`` is given,
was the *relation-extraction* sentence; ours is the NER sentence (``UPSTREAM_NER_EN`` keeps the old one).

The prompt is ``instruction + examples + query``. A custom ``instruction`` is used verbatim plus ``"\\n"`` and
replaces the default *and* its output-format line, as upstream does.

>>> build_icl_prompt("ner", "en", "Tom lives in Paris.", labels=["PER", "LOC"]).splitlines()[-2:]
['Input: Tom lives in Paris.', 'Output: ']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ICL_TASKS",
    "LANGUAGES",
    "INSTRUCTIONS",
    "UPSTREAM_NER_EN",
    "normalize_language",
    "check_task",
    "default_instruction",
    "query_text",
    "examples_block",
    "build_icl_prompt",
]

ICL_TASKS = ("ner", "re", "ee", "rte", "da")
LANGUAGES = ("en", "zh", "ch")  # "ch" is upstream's spelling of Chinese; "cn" is accepted for its file names

_RE_EN_GENERIC = ("You are a highly intelligent and accurate relation extraction(RE) system. Given a context, a pair of "
                  "head and tail entities in the context, your task is to extract the specific type of relationship "
                  "between the head and tail entities.\n")
UPSTREAM_NER_EN = _RE_EN_GENERIC  # upstream's bug: the NER "neither" instruction is the RE sentence

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


def normalize_language(language: str) -> str:
    """``en`` stays ``en``; ``zh``, ``ch`` and ``cn`` become upstream's ``ch``. Anything else lists the valid names."""
    value = (language or "").strip().lower()
    if value == "en":
        return "en"
    if value in ("zh", "ch", "cn"):
        return "ch"
    raise ValueError(f"unknown language {language!r}; valid languages: {', '.join(LANGUAGES)}")


def check_task(task: str) -> str:
    """The lower-case task name, or an error listing the valid ones."""
    value = (task or "").strip().lower()
    if value not in ICL_TASKS:
        raise ValueError(f"unknown ICL task {task!r}; valid tasks: {', '.join(ICL_TASKS)}")
    return value


def default_instruction(task: str, language: str, domain: str | None = None, labels: Sequence[str] | None = None) -> str:
    """The default instruction plus its output-format line (upstream's choice order: both, domain, labels, neither)."""
    task, language = check_task(task), normalize_language(language)
    table = INSTRUCTIONS[(task, language)]
    joined = _JOIN[language].join(labels) if labels else ""
    if task == "da":
        if not labels:
            raise ValueError("task da needs --labels (the entity types, e.g. 'person, organization')")
        return table["labels"].format(joined) + table["output"]
    if task in ("ner", "re") and domain and labels:
        head = table["domain_labels"].format(domain, joined)
    elif domain:
        head = table["domain"].format(domain)
    elif task in ("ner", "re") and labels:
        head = table["labels"].format(joined)
    else:
        head = table["plain"]
    return head + table["output"]


def query_text(task: str, language: str, text: str, *, head_entity: str | None = None, head_type: str | None = None,
               tail_entity: str | None = None, tail_type: str | None = None) -> str:
    """The query part (``text`` is the relation label for ``da``)."""
    task, language = check_task(task), normalize_language(language)
    if language == "en":
        if task == "re":
            return (f"Context: {text}\nThe relation between ({head_type}) '{head_entity}' and ({tail_type}) "
                    f"'{tail_entity}' in the context is: ")
        if task == "da":
            return f"Generate more samples for the relation '{text}':\n"
        return f"Input: {text}\nOutput: "
    if task == "re":
        return f"上下文：{text}\n上下文中头实体（{head_type}）‘{head_entity}’和尾实体（{tail_type}）‘{tail_entity}’之间的关系类型是："
    if task == "da":
        return f"请为关系‘{text}’生成更多的样例数据：\n"
    return f"输入：{text}\n输出："


def _example_items(task: str, language: str, example: Mapping[str, Any]) -> dict[str, str]:
    en = language == "en"
    if task in ("ner", "ee", "rte"):
        return {("Input" if en else "输入"): example["input"], ("\nOutput" if en else "\n输出"): str(example["output"])}
    if task == "re":
        if en:
            out = (f"The relation between ({example['head_type']}) '{example['head_entity']}' and ({example['tail_type']}) "
                   f"'{example['tail_entity']}' in the context is: {example['relation']}")
            return {"Context": example["context"], "Output": out}
        out = (f"上下文头实体（{example['head_type']}）‘{example['head_entity']}’和尾实体（{example['tail_type']}）"
               f"‘{example['tail_entity']}’间的关系类型是： {example['relation']}")
        return {"上下文": example["context"], "输出": out}
    keys = (("Relation", "relation"), ("\nContext", "context"), ("\nHead Entity", "head_entity"),
            ("\nHead Type", "head_type"), ("\nTail Entity", "tail_entity"), ("\nTail Type", "tail_type"))
    if not en:
        keys = (("关系", "relation"), ("\n上下文", "context"), ("\n头实体", "head_entity"), ("\n头实体类型", "head_type"),
                ("\n尾实体", "tail_entity"), ("\n尾实体类型", "tail_type"))
    return {label: example[field] for label, field in keys}


def examples_block(task: str, language: str, examples: Sequence[Mapping[str, Any]]) -> str:
    """The demonstrations, rendered as upstream renders them (``key: value`` pairs run together, one dict a line).

    ``examples`` are normalised demonstrations (``demos.load_demos``): ``input``/``output`` for ner, ee and rte;
    ``context``, ``head_*``, ``tail_*``, ``relation`` for re and da.
    """
    task, language = check_task(task), normalize_language(language)
    if not examples:
        return ""
    if task == "da":
        rel = examples[0]["relation"]
        header = f"Here are some samples for relation '{rel}'" if language == "en" else f"这里有一些关于关系‘{rel}’的样本"
    else:
        header = "Examples" if language == "en" else "示例"
    lines = [f"{header}: "]
    for example in examples:
        lines.append("".join(f"{key}: {value}" for key, value in _example_items(task, language, example).items()))
    return "".join(line + "\n" for line in lines)


def build_icl_prompt(task: str, language: str, text: str, *, domain: str | None = None, labels: Sequence[str] | None = None,
                     head_entity: str | None = None, head_type: str | None = None, tail_entity: str | None = None,
                     tail_type: str | None = None, examples: Sequence[Mapping[str, Any]] | None = None,
                     instruction: str | None = None) -> str:
    """The complete user message: instruction, then demonstrations (when ``examples`` is non-empty), then the query.

    Args:
        task: ner, re, ee, rte or da.
        language: en, or zh/ch for Chinese.
        text: the passage; for ``da``, the relation label to generate samples for.
        domain, labels: choose the default instruction's variant (``da`` requires labels).
        head_entity, head_type, tail_entity, tail_type: the pair for ``re``.
        examples: normalised demonstrations; ``None`` or empty means zero-shot.
        instruction: a custom instruction, used verbatim plus a newline (replaces the default and its format line).
    """
    task, language = check_task(task), normalize_language(language)
    if task == "da" and not labels:
        raise ValueError("task da needs --labels (the entity types, e.g. 'person, organization')")
    head = instruction + "\n" if instruction is not None else default_instruction(task, language, domain, labels)
    query = query_text(task, language, text, head_entity=head_entity, head_type=head_type,
                       tail_entity=tail_entity, tail_type=tail_type)
    return head + examples_block(task, language, examples or ()) + query
