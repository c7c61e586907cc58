"""A deliberately plain restatement of SPEC.md §1 for the deterministic case, used as a test oracle.

Sorted mode, ``--neg_schema 1``, train split, tasks NER/RE/SPO/EET/KG: the only configuration in which
upstream's converter is deterministic (SPEC §1.8). Written straight from the spec with ordinary
``json.dumps`` calls and no shared code with ``deepke_llm_core.convert``, so that the converter's optimised
string building is checked against an independent reading of the rules.
"""

from __future__ import annotations

import json

SENTENCES = {
    ("NER", "zh"): "你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体，不存在的实体类型返回空列表。请按照JSON字符串的格式回答。",
    ("RE", "zh"): "你是专门进行关系抽取的专家。请从input中抽取出符合schema定义的关系三元组，不存在的关系返回空列表。请按照JSON字符串的格式回答。",
    ("EET", "zh"): "你是专门进行事件提取的专家。请从input中抽取出符合schema定义的事件类型及事件触发词，不存在的事件返回空列表。请按照JSON字符串的格式回答。",
    ("KG", "zh"): "你是一个图谱实体知识结构化专家。根据输入实体类型(entity type)的schema描述，从文本中抽取出相应的实体实例和其属性信息，不存在的属性不输出, 属性存在多值就返回列表，并输出为可解析的json格式。",
    ("NER", "en"): "You are an expert in named entity recognition. Please extract entities that match the schema definition from the input. Return an empty list if the entity type does not exist. Please respond in the format of a JSON string.",
    ("RE", "en"): "You are an expert in relationship extraction. Please extract relationship triples that match the schema definition from the input. Return an empty list for relationships that do not exist. Please respond in the format of a JSON string.",
    ("EET", "en"): "You are an expert in event extraction. Please extract event types and event trigger words from the input that conform to the schema definition. Return an empty list for non-existent events. Please respond in the format of a JSON string.",
    ("KG", "en"): "You are an expert in structured knowledge systems for graph entities. Based on the schema description of the input entity type, you extract the corresponding entity instances and their attribute information from the text. Attributes that do not exist should not be output. If an attribute has multiple values, a list should be returned. The results should be output in a parsable JSON format.",
}
SENTENCES[("SPO", "zh")] = SENTENCES[("RE", "zh")]
SENTENCES[("SPO", "en")] = SENTENCES[("RE", "en")]


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False)


def chunks(items, k):
    if k == -1:
        return [items]
    out = []
    full = max(len(items) // k, 1) * k
    for start in range(0, full, k):
        out.append(items[start:start + k])
    rest = items[full:]
    if len(rest) >= max(1, k // 2):
        out.append(rest)
    else:
        out[-1] = out[-1] + rest
    return out


def unique(seq):
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def oracle_train_lines(task, records, schema_lines, language, split_num, source, rel_keys=("head", "tail")):
    """The expected output lines (without newlines) for sorted-mode, neg_schema=1 train conversion."""
    types, roles, type_roles = schema_lines
    lines = []
    for rec in records:
        text = rec["text"]
        if task == "NER":
            ann = unique([(e["entity"], e["entity_type"]) for e in rec["entity"]])
            items = sorted(set(types) | {t for _, t in ann})
            outputs = []
            for chunk in chunks(items, split_num):
                outputs.append((chunk, {t: [e for e, tt in ann if tt == t] for t in chunk}))
        elif task == "RE":
            ann = unique([(e["head"], e["relation"], e["tail"]) for e in rec["relation"]])
            items = sorted(set(roles) | {r for _, r, _ in ann})
            outputs = [(c, {r: [{rel_keys[0]: h, rel_keys[1]: t} for h, rr, t in ann if rr == r] for r in c}) for c in chunks(items, split_num)]
        elif task == "SPO":
            seen, ann = set(), []
            for e in rec["relation"]:
                if (e["head"], e["relation"], e["tail"]) not in seen:
                    seen.add((e["head"], e["relation"], e["tail"]))
                    ann.append(e)
            spo = lambda e: e["head_type"] + "_" + e["relation"] + "_" + e["tail_type"]
            items = sorted(set(types) | {spo(e) for e in ann})
            outputs = []
            for chunk in chunks(items, split_num):
                out = {}
                for s in chunk:
                    pred = "_".join(s.split("_")[1:-1])
                    out[pred] = out.get(pred, []) + [{"subject": e["head"], "object": e["tail"]} for e in ann if spo(e) == s]
                outputs.append(([{"subject_type": s.split("_")[0], "predicate": "_".join(s.split("_")[1:-1]), "object_type": s.split("_")[-1]} for s in chunk], out))
        elif task == "EET":
            items = sorted(set(types) | {e["event_type"] for e in rec["event"]})
            outputs = [(c, {t: [e["event_trigger"] for e in rec["event"] if e["event_type"] == t] for t in c}) for c in chunks(items, split_num)]
        elif task == "KG":
            entity_type = list(type_roles)[0]
            attrs = sorted(set(roles) | {e["relation"] for e in rec["relation"]})
            heads = sorted(unique([e["head"] for e in rec["relation"]]), key=text.find)
            value = {}
            for h in heads:
                value[h] = {}
                for a in attrs:
                    tails = sorted([e["tail"] for e in rec["relation"] if e["head"] == h and e["relation"] == a], key=text.find)
                    if tails:
                        value[h][a] = tails[0] if len(tails) == 1 else tails
            outputs = [([{"entity_type": entity_type, "attributes": attrs}], {entity_type: value})]
        else:
            raise ValueError(task)
        for schema_chunk, output in outputs:
            instruction = dumps({"instruction": SENTENCES[(task, language)], "schema": schema_chunk, "input": text})
            lines.append(dumps({"task": task, "source": source, "instruction": instruction, "output": dumps(output)}))
    return lines
