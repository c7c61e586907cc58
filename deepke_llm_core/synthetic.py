"""Synthetic raw IE records (NER, RE, EE; zh and en) whose held-out entities never occur in training.

Why compositional name pools: a tiny model learns the JSON frame of an answer at once, but it only learns to *copy*
a span from the input when remembering names stops paying (``shared/TINY_MODELS.md``). So names are built from parts
(English first x last names, Chinese surname + given name, organisations and products as stem + suffix, dates as
month + year) and every full name is assigned, by a stable hash, to the training pool or the held-out pool; cities
are split by list. A held-out name never occurs in any training sentence, so a model that extracts it has learned to
read, not to remember. The parts are shared: ``Grace Holt`` may be held out while ``Grace Lin`` and ``Ada Holt`` are
trained on, as a real model meets new combinations of familiar pieces.

Four splits:

* ``train``: training sentence templates, training names (what the tiny base is trained on);
* ``test``: the same templates, held-out names (the base's held-out check: entities never seen);
* ``new``: templates the base never trained on, held-out names: a "new domain" to fine-tune on (the quickstart);
* ``novel``: training templates, invented names (English: the words of every name part, recombined across types;
  Chinese: random characters of the parts), thousands per type and never a held-out name. Why: with a few hundred
  training names a tiny model can answer by picking the closest name it remembers (``Meridian Systems`` ->
  ``Quantum Systems``); names it cannot remember leave copying from the input as the only way to lower the loss.

One template describes a whole little scene: its slots (typed entities), the relations between slots and at most one
event. Each task reads its own view of the same scene, in exactly the raw formats of ``SPEC.md`` §1.3:

* NER: ``{"text", "entity": [{"entity", "entity_type"}]}``
* RE: ``{"text", "relation": [{"head", "relation", "tail"}]}``
* EE: ``{"text", "event": [{"event_trigger", "event_type", "arguments": [{"argument", "role"}]}]}``

Labels can be excluded (or required) by entity type, relation or event type, in either language's spelling or by
their canonical English key, so a fine-tuning test can teach a type that the base model never saw.

>>> recs = make_records("NER", "en", 2, seed=1)
>>> all(e["entity"] in r["text"] for r in recs for e in r["entity"])
True
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Collection
from functools import lru_cache

from ._synthetic_scenes import ENTITY_TYPES, EVENTS, NEW_SCENES, RELATIONS, SLOT_TYPES, TRAIN_SCENES, Scene

__all__ = [
    "LANGUAGES",
    "TASKS",
    "SPLITS",
    "vocabulary",
    "make_records",
    "make_split",
    "schema_lines",
    "schema_text",
    "corpus_texts",
]

LANGUAGES = ("zh", "en")
TASKS = ("NER", "RE", "EE")
SPLITS = ("train", "test", "new", "novel")

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_YEARS = tuple(range(2001, 2025))
# Name parts. No part of one type is a substring of a name of another type in the same record (checked when filling).
_PARTS = {
    "en": {
        "first": ("Alice", "John", "Maria", "David", "Emma", "Tom", "Sarah", "Kevin", "Laura", "Peter", "Nina", "Oscar",
                  "Grace", "Henry", "Julia", "Victor", "Chloe", "Samuel", "Irene", "Marcus", "Helen", "Daniel", "Rosa",
                  "Felix", "Diana", "Lucas", "Paula", "Hugo", "Clara", "Martin", "Sofia", "Adam", "Vera", "Leon",
                  "Emily", "Ivan", "Hannah", "Omar", "Lily", "Ethan"),
        "last": ("Smith", "Brown", "Garcia", "Lee", "Wilson", "Clark", "Johnson", "Wang", "Miller", "Davis", "Lopez",
                 "Turner", "Baker", "Young", "Hall", "Allen", "Wright", "Scott", "Green", "Adams", "Nelson", "Hill",
                 "Carter", "Mitchell", "Parker", "Evans", "Collins", "Stewart", "Morris", "Reed", "Cook", "Morgan",
                 "Bell", "Murphy", "Bailey", "Cooper", "Howard", "Ward", "Cox", "Holt"),
        "org_stem": ("Apex", "Vertex", "Nimbus", "Orion", "Cobalt", "Summit", "Harbor", "Crescent", "Falcon",
                     "Granite", "Meridian", "Pioneer", "Quantum", "Sterling", "Atlas", "Beacon", "Cedar", "Delta",
                     "Ember", "Frontier", "Helix", "Juniper", "Keystone", "Lumen", "Maple", "Northwind", "Onyx",
                     "Prism", "Redwood", "Titan", "Vanguard", "Willow", "Zenith", "Polaris", "Aurora", "Evergreen"),
        "org_suffix": ("Labs", "Group", "Bank", "University", "Motors", "Systems", "Energy", "Media", "Foods",
                       "Airlines"),
        "product_stem": ("Nova", "Aero", "Pulse", "Orbit", "Volt", "Echo", "Flux", "Glide", "Halo", "Lyra", "Nexa",
                         "Pixel", "Sonic", "Terra", "Vibe", "Zephyr", "Astra", "Blaze", "Comet", "Drift", "Fusion",
                         "Kite", "Quasar", "Spark"),
        "product_noun": ("Phone", "Drone", "Watch", "Tablet", "Car", "Buds", "Speaker", "Camera", "Laptop", "Router",
                         "Scooter", "Headset"),
        "city_train": ("London", "Paris", "Berlin", "Tokyo", "Boston", "Madrid", "Sydney", "Toronto", "Chicago",
                       "Vienna", "Dublin", "Lisbon", "Oslo", "Prague", "Seoul", "Denver", "Austin", "Seattle",
                       "Geneva", "Milan", "Munich", "Osaka", "Dallas", "Atlanta", "Warsaw", "Helsinki", "Athens",
                       "Cairo", "Lagos", "Lima", "Quito", "Rome"),
        # Two-word places: each word is also trained on in other places, so a held-out place is new words in a new
        # combination but never a piece the tokenizer only uses inside held-out names.
        "place_word": ("Ash", "Oak", "Brook", "Clay", "Stone", "Fair", "River", "King", "Wood", "Bright", "Marsh",
                       "Glen", "Rock", "Salt", "Wind", "Pine", "Elk", "Fox", "Hawk", "Cole"),
        "place_pattern": ("Port {}", "Lake {}", "Mount {}", "Fort {}", "New {}", "{} Falls", "{} Bay", "{} Springs"),
    },
    "zh": {
        "first": ("张", "王", "李", "赵", "刘", "陈", "杨", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭", "何",
                  "林", "高", "罗", "郑", "梁", "谢", "宋"),
        "last": ("伟", "娜", "芳", "洋", "静", "磊", "敏", "杰", "昊", "悦", "明", "华", "强", "丽", "军", "婷", "勇",
                 "艳", "涛", "超", "建国", "志强", "晓明", "海燕", "子涵", "雨欣", "思远", "浩然", "欣怡", "俊杰",
                 "文博", "宇航", "梓萱", "一鸣", "佳琪", "天宇", "雅婷", "振华", "秀英", "国庆"),
        "org_stem": ("华信", "恒达", "天启", "博远", "金石", "蓝海", "星河", "宏图", "东方", "鼎盛", "中科", "远航",
                     "新锐", "万通", "嘉禾", "瑞丰", "海川", "明德", "长城", "光华", "安泰", "永安", "国泰", "春晖",
                     "青云", "银河", "泰和", "九州", "盛世", "鸿运", "凯旋", "百川"),
        "org_suffix": ("公司", "集团", "大学", "银行", "科技", "研究院", "医院", "航空"),
        "product_stem": ("星光", "云帆", "极光", "飞鹰", "雷霆", "晨曦", "灵动", "天籁", "疾风", "火花", "流星",
                         "彩虹", "蜂鸟", "海豚", "麒麟", "凤凰", "北斗", "启明", "青鸟", "白鹭"),
        "product_noun": ("手表", "平板", "无人机", "汽车", "耳机", "手机", "音箱", "相机", "机器人", "电脑", "滑板车",
                         "眼镜"),
        "city_train": ("北京", "上海", "杭州", "南京", "成都", "武汉", "西安", "广州", "深圳", "重庆", "天津", "苏州",
                       "长沙", "郑州", "青岛", "宁波", "厦门", "大连", "沈阳", "济南", "合肥", "福州", "昆明", "贵阳",
                       "太原", "兰州", "哈尔滨", "石家庄", "温州", "无锡"),
        "city_held_out": ("南宁", "北海", "西宁", "长春", "济宁", "大庆", "汉中", "南通"),
    },
}
_HELD_OUT_BUCKETS = 5  # one name in five (by a stable hash) is held out of training
_HELD_OUT_YEARS = (2004, 2009, 2013, 2018, 2023)  # dates are held out by year: "2004" is inside "March 2004"


def _check_args(task: str, language: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; synthetic data exists for {', '.join(TASKS)}")
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")


def _held_out_name(name: str) -> bool:
    """A stable (process- and platform-independent) choice of the held-out fifth of compositional names."""
    return zlib.crc32(name.encode("utf-8")) % _HELD_OUT_BUCKETS == 0


def _all_names(language: str) -> dict[str, list[str]]:
    """Every name of every slot type, before the train / held-out partition."""
    parts = _PARTS[language]
    sep = " " if language == "en" else ""
    if language == "en":
        times = [str(y) for y in _YEARS] + [f"{m} {y}" for y in _YEARS for m in _MONTHS]
    else:
        times = [f"{y}年" for y in _YEARS] + [f"{y}年{m}月" for y in _YEARS for m in range(1, 13)]
    return {
        "person": [f"{a}{sep}{b}" for a in parts["first"] for b in parts["last"]],
        "organization": [f"{a}{sep}{b}" for a in parts["org_stem"] for b in parts["org_suffix"]],
        "product": [f"{a}{sep}{b}" for a in parts["product_stem"] for b in parts["product_noun"]],
        "time": times,
        "location": [p.format(w) for p in parts.get("place_pattern", ()) for w in parts.get("place_word", ())],
    }


@lru_cache(maxsize=None)
def _pools(language: str, held_out: bool) -> dict[str, tuple[str, ...]]:
    parts = _PARTS[language]
    pools = {kind: tuple(n for n in names if _held_out_name(n) == held_out)
             for kind, names in _all_names(language).items() if kind != "time"}
    pools["time"] = tuple(n for n in _all_names(language)["time"]
                          if any(str(y) in n for y in _HELD_OUT_YEARS) == held_out)
    # Cities: a list split in two (zh), or famous cities for training plus a share of two-word places (en).
    pools["location"] = (parts.get("city_held_out", ()) if held_out else parts["city_train"]) + pools["location"]
    return pools


_NOVEL_PER_TYPE = 4000


@lru_cache(maxsize=None)
def _novel_pools(language: str) -> dict[str, tuple[str, ...]]:
    """Invented names, deterministic, none of them a training or held-out name.

    English: every single word of every name part, in the variable place of every type (a city as an organisation's
    stem, a surname as a product's): the word alone no longer says the type, only the suffix or pattern after it
    does, so the answer has to be read off the input. Chinese: two random characters of the parts.
    """
    parts = _PARTS[language]
    taken = {name for held_out in (False, True) for values in _pools(language, held_out).values() for name in values}
    if language == "en":
        words = sorted({w for key in ("first", "last", "org_stem", "product_stem", "city_train", "place_word")
                        for w in parts[key]})
        candidates = {
            "person": [f"{a} {b}" for a in words for b in words if a != b],
            "organization": [f"{w} {s}" for w in words for s in parts["org_suffix"]],
            "product": [f"{w} {n}" for w in words for n in parts["product_noun"]],
            "location": [p.format(w) for p in parts["place_pattern"] for w in words] + words,
        }
    else:
        chars = sorted({c for key in ("last", "org_stem", "product_stem") for part in parts[key] for c in part})
        pairs = [a + b for a in chars for b in chars if a != b]
        candidates = {
            "person": [f + p for f in parts["first"] for p in pairs],
            "organization": [p + s for p in pairs for s in parts["org_suffix"]],
            "product": [p + n for p in pairs for n in parts["product_noun"]],
            "location": pairs,
        }
    rng = random.Random(f"novel-{language}")
    pools: dict[str, tuple[str, ...]] = {}
    for kind, names in candidates.items():
        free = [n for n in names if n not in taken]
        pools[kind] = tuple(sorted(rng.sample(free, min(_NOVEL_PER_TYPE, len(free)))))
    pools["time"] = _pools(language, False)["time"]
    return pools


def vocabulary(language: str, split: str = "train") -> dict[str, tuple[str, ...]]:
    """The entity names of a split, keyed by canonical slot type (``person``, ..., ``time``).

    ``train`` names and ``test``/``new`` names (the held-out pool, shared by both) are disjoint; ``novel`` names
    are invented and never a held-out name.
    """
    _check_args("NER", language)
    _check_split(split)
    if split == "novel":
        return dict(_novel_pools(language))
    return dict(_pools(language, split != "train"))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(map(repr, SPLITS))}")


def _slots(scene: Scene) -> list[str]:
    """Slot names in order of first appearance in the zh pattern (same set in both languages)."""
    names: list[str] = []
    for piece in scene.zh.split("{")[1:]:
        name = piece.split("}")[0]
        if name not in names:
            names.append(name)
    return names


def _labels(scene: Scene) -> set[str]:
    """Every spelling of every label the scene mentions: canonical keys plus zh and en names."""
    out: set[str] = set()
    for slot in _slots(scene):
        kind = SLOT_TYPES[slot[0]]
        out.add(kind)
        out.update(ENTITY_TYPES.get(kind, ()))
    for _, rel, _ in scene.relations:
        out.add(rel)
        out.update(RELATIONS[rel][:2])
    if scene.event:
        out.add(scene.event[0])
        out.update(EVENTS[scene.event[0]][:2])
    return out


def _excluded_keys(exclude: Collection[str]) -> set[str]:
    """Canonical keys of every label knocked out by ``exclude``, including labels that depend on an excluded type."""
    keys: set[str] = set()
    for key, names in ENTITY_TYPES.items():
        if key in exclude or set(names) & set(exclude):
            keys.add(key)
    for key, (zh, en, head, tail) in RELATIONS.items():
        if {key, zh, en} & set(exclude) or {head, tail} & keys:
            keys.add(key)
    for key, (zh, en, roles) in EVENTS.items():
        if {key, zh, en} & set(exclude) or {r[3] for r in roles} & keys:
            keys.add(key)
    return keys


def _scene_has(scene: Scene, task: str) -> bool:
    return {"NER": True, "RE": bool(scene.relations), "EE": scene.event is not None}[task]


def _render(scene: Scene, task: str, language: str, fill: dict[str, str]) -> dict:
    li = LANGUAGES.index(language)
    text = getattr(scene, language).format(**fill)
    if task == "NER":
        seen: set[str] = set()
        ents = []
        for slot in _slots(scene):
            kind = SLOT_TYPES[slot[0]]
            if kind in ENTITY_TYPES and fill[slot] not in seen:
                seen.add(fill[slot])
                ents.append({"entity": fill[slot], "entity_type": ENTITY_TYPES[kind][li]})
        ents.sort(key=lambda e: text.find(e["entity"]))
        return {"text": text, "entity": ents}
    if task == "RE":
        rels = [{"head": fill[h], "relation": RELATIONS[r][li], "tail": fill[t]} for h, r, t in scene.relations]
        return {"text": text, "relation": rels}
    key, zh_trigger, en_trigger, roles = scene.event  # type: ignore[misc]
    role_names = {r[0]: r[1 + li] for r in EVENTS[key][2]}
    args = [{"argument": fill[slot], "role": role_names[role]} for role, slot in roles]
    trigger = zh_trigger if language == "zh" else en_trigger
    return {"text": text, "event": [{"event_trigger": trigger, "event_type": EVENTS[key][li], "arguments": args}]}


def _fill(scene: Scene, pools: dict[str, tuple[str, ...]], rng: random.Random) -> dict[str, str] | None:
    """Names for the slots; ``None`` when a draw overlaps (one name inside another makes a span ambiguous)."""
    fill: dict[str, str] = {}
    for slot in _slots(scene):
        value = rng.choice(pools[SLOT_TYPES[slot[0]]])
        if any(value in other or other in value for other in fill.values()):
            return None
        fill[slot] = value
    return fill


def make_records(task: str, language: str, n: int, *, seed: int | random.Random = 0, split: str = "train",
                 exclude: Collection[str] = (), require: Collection[str] = ()) -> list[dict]:
    """Make ``n`` distinct raw records for one task and language.

    Args:
        task: ``"NER"``, ``"RE"`` or ``"EE"``.
        language: ``"zh"`` or ``"en"``.
        n: how many records; each has a different text.
        seed: an int or a ``random.Random``; the same seed gives the same records.
        split: ``"train"`` (training templates and names), ``"test"`` (training templates, held-out names),
            ``"new"`` (templates never trained on, held-out names) or ``"novel"`` (training templates, invented names).
        exclude: labels (entity types, relations, event types; any spelling) that must not appear. A scene that
            mentions one is skipped entirely, so the excluded names are never even seen untagged.
        require: if given, only scenes mentioning at least one of these labels are used.

    Raises:
        ValueError: on an unknown task/language/split, or when the filters leave no scene or too few texts.
    """
    _check_args(task, language)
    _check_split(split)
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    dropped = _excluded_keys(exclude)
    scenes = [s for s in (NEW_SCENES if split == "new" else TRAIN_SCENES)
              if _scene_has(s, task)
              and not (_labels(s) & (dropped | set(exclude)))
              and (not require or _labels(s) & set(require))]
    if not scenes:
        raise ValueError(f"no {split} scene for task={task} language={language} "
                         f"exclude={sorted(exclude)} require={sorted(require)}")
    pools = vocabulary(language, split)
    records: list[dict] = []
    texts: set[str] = set()
    misses = 0  # consecutive draws that repeated a text: many in a row means the combinations are exhausted
    while len(records) < n:
        if misses > 5000:
            raise ValueError(f"only about {len(records)} distinct texts possible for these filters; asked for {n}")
        scene = rng.choice(scenes)
        fill = _fill(scene, pools, rng)
        record = _render(scene, task, language, fill) if fill else None
        if record is None or record["text"] in texts:
            misses += 1
            continue
        misses = 0
        texts.add(record["text"])
        records.append(record)
    return records


def make_split(task: str, language: str, n_train: int, n_test: int, *, seed: int = 0,
               exclude: Collection[str] = (), require: Collection[str] = ()) -> tuple[list[dict], list[dict]]:
    """A train set and a held-out set: the same sentence templates, disjoint entity names.

    The two sets use independent seeds derived from ``seed`` so that changing ``n_train`` does not change the test set.
    """
    train = make_records(task, language, n_train, seed=random.Random(f"{seed}-train"), split="train",
                         exclude=exclude, require=require)
    test = make_records(task, language, n_test, seed=random.Random(f"{seed}-test"), split="test",
                        exclude=exclude, require=require)
    return train, test


def schema_lines(task: str, language: str, *, exclude: Collection[str] = ()) -> list:
    """The three values of a ``schema.json`` (SPEC §1.5) for the synthetic ontology, minus excluded labels.

    NER: ``[types, [], {}]``; RE: ``[[], relations, {}]``; EE: ``[event types, all roles, {type: roles}]``.
    """
    _check_args(task, language)
    li = LANGUAGES.index(language)
    dropped = _excluded_keys(exclude)
    if task == "NER":
        return [[names[li] for key, names in ENTITY_TYPES.items() if key not in dropped], [], {}]
    if task == "RE":
        return [[], [v[li] for key, v in RELATIONS.items() if key not in dropped], {}]
    types: list[str] = []
    roles: list[str] = []
    by_type: dict[str, list[str]] = {}
    for key, (zh, en, role_defs) in EVENTS.items():
        if key in dropped:
            continue
        name = (zh, en)[li]
        types.append(name)
        by_type[name] = [r[1 + li] for r in role_defs]
        roles.extend(r for r in by_type[name] if r not in roles)
    return [types, roles, by_type]


def schema_text(task: str, language: str, *, exclude: Collection[str] = ()) -> str:
    """``schema_lines`` serialised as the three-line file (``ensure_ascii=False``, trailing newline)."""
    return "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in schema_lines(task, language, exclude=exclude))


def corpus_texts(n_per_task: int = 200, seed: int = 0) -> list[str]:
    """Text a tiny tokenizer should know well: training sentences, their JSON labels, every training name and label.

    Only the *train* split is used: held-out names tokenize into pieces learned from training text (the pre-tokenizer
    keeps a span's tokens the same in the sentence and in the answer), never into pieces of their own that training
    would leave untrained.
    """
    rng = random.Random(seed)
    out: list[str] = []
    for language in LANGUAGES:
        for values in _pools(language, False).values():
            out.extend(values)
        for task in TASKS:
            out.append(schema_text(task, language))
            for record in make_records(task, language, n_per_task, seed=rng, split="train"):
                out.append(record["text"])
                out.append(json.dumps(record, ensure_ascii=False))
    return out


def make_document(task: str, language: str, min_chars: int, *, seed: int = 0, exclude: Collection[str] = ()) -> dict:
    """A long document: sentences of both splits' templates, in random order, until it has ``min_chars`` characters.

    Returns ``{"id", "text", <annotation field>: every sentence's labels in order, "sentences": [[start, end], ...],
    "sentence_labels": [each sentence's labels]}``; ``id``, ``text`` and the annotation field make a line that
    ``deepke-llm extract`` reads with its gold annotation (long-document tests, chapter 13). Sentences may
    repeat (a long document mentions the same people again); Chinese sentences are joined directly, English ones
    with a space.
    """
    _check_args(task, language)
    rng = random.Random(seed)
    field = {"NER": "entity", "RE": "relation", "EE": "event"}[task]
    sep = "" if language == "zh" else " "
    texts: list[str] = []
    gold: list[dict] = []
    sentences: list[list[int]] = []
    labels: list[list[dict]] = []
    at = 0
    while at < min_chars:
        for record in make_records(task, language, 40, seed=rng, split=rng.choice(("train", "test")), exclude=exclude):
            start = at + (len(sep) if texts else 0)
            texts.append(record["text"])
            gold.extend(record[field])
            labels.append(record[field])
            sentences.append([start, start + len(record["text"])])
            at = start + len(record["text"])
            if at >= min_chars:
                break
    return {"id": f"synthetic-{task}-{language}-{seed}", "text": sep.join(texts), field: gold, "sentences": sentences,
            "sentence_labels": labels}
