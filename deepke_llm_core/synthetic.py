"""Synthetic raw IE records (NER, RE, EE; zh and en) from a closed vocabulary.

Why a closed vocabulary: a model of a few hundred thousand parameters learns the JSON frame of an answer at once, but
it cannot learn to copy a name it has never seen (``shared/TINY_MODELS.md``). So every entity here comes from a small
fixed list per type, and new sentences recombine those entities. The held-out split uses *sentence templates* the
training split never uses, so a model that scores on it has learned to read, not to remember sentences.

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
from collections.abc import Collection
from dataclasses import dataclass

__all__ = [
    "LANGUAGES",
    "TASKS",
    "vocabulary",
    "make_records",
    "make_split",
    "schema_lines",
    "schema_text",
    "corpus_texts",
]

LANGUAGES = ("zh", "en")
TASKS = ("NER", "RE", "EE")

# Canonical key -> (zh name, en name). "time" is a slot type used by events only; it is not an NER type.
_ENTITY_TYPES = {
    "person": ("人物", "person"),
    "location": ("地点", "location"),
    "organization": ("组织机构", "organization"),
    "product": ("产品", "product"),
}
# relation key -> (zh, en, head slot type, tail slot type)
_RELATIONS = {
    "works_for": ("就职于", "works for", "person", "organization"),
    "born_in": ("出生地", "born in", "person", "location"),
    "located_in": ("位于", "located in", "organization", "location"),
    "founded_by": ("创始人", "founded by", "organization", "person"),
    "produced_by": ("生产商", "produced by", "product", "organization"),
}
# event key -> (zh name, en name, ((role key, zh role, en role, slot type), ...))
_EVENTS = {
    "acquisition": ("企业收购", "acquisition", (
        ("acquirer", "收购方", "acquirer", "organization"),
        ("target", "被收购方", "target", "organization"),
        ("time", "时间", "time", "time"))),
    "employment": ("人物入职", "employment", (
        ("employee", "入职者", "employee", "person"),
        ("employer", "公司", "employer", "organization"),
        ("time", "时间", "time", "time"))),
    "launch": ("产品发布", "product launch", (
        ("company", "发布方", "company", "organization"),
        ("product", "产品", "product", "product"),
        ("time", "时间", "time", "time"))),
}
# No entity is a substring of another entity of the same language, so a span found in the text is unambiguous.
_VOCAB = {
    "zh": {
        "person": ("张伟", "李娜", "王芳", "刘洋", "陈静", "杨磊", "赵敏", "周杰", "吴昊", "孙悦"),
        "location": ("北京", "上海", "杭州", "南京", "成都", "武汉", "西安", "广州"),
        "organization": ("浙江大学", "清华大学", "华为公司", "阿里巴巴", "中国银行", "腾讯公司", "复旦大学", "小米集团"),
        "product": ("智能手表", "平板电脑", "无人机", "电动汽车", "扫地机器人", "蓝牙耳机"),
        "time": ("2019年", "2020年", "2021年", "2022年3月", "去年", "上个月"),
    },
    "en": {
        "person": ("Alice Smith", "John Brown", "Maria Garcia", "David Lee", "Emma Wilson", "Tom Clark",
                   "Sarah Johnson", "Kevin Wang"),
        "location": ("London", "Paris", "Berlin", "Tokyo", "Boston", "Madrid", "Sydney", "Toronto"),
        "organization": ("Google", "Oxford University", "Siemens", "Toyota", "Harvard University", "Red Cross",
                         "Nokia", "Deutsche Bank"),
        "product": ("Nova Phone", "Aero Drone", "Pulse Watch", "Orbit Tablet", "Volt Car", "Echo Buds"),
        "time": ("2019", "2020", "2021", "March 2022", "May 2023", "June 2018"),
    },
}
_SLOT_TYPES = {"p": "person", "l": "location", "o": "organization", "x": "product", "t": "time"}


@dataclass(frozen=True)
class _Scene:
    """One sentence pattern: slots ``{p1}``, ``{o2}``... (letter = type), relations and an optional event."""

    zh: str
    en: str
    relations: tuple[tuple[str, str, str], ...] = ()  # (head slot, relation key, tail slot)
    event: tuple[str, str, str, tuple[tuple[str, str], ...]] | None = None  # (key, zh trigger, en trigger, roles)
    heldout: bool = False


_SCENES = (
    _Scene("{p1}出生在{l1}，现在就职于{o1}。", "{p1} was born in {l1} and now works for {o1}.",
           (("p1", "born_in", "l1"), ("p1", "works_for", "o1"))),
    _Scene("{o1}由{p1}创办，总部位于{l1}。", "{o1} was founded by {p1} and is based in {l1}.",
           (("o1", "founded_by", "p1"), ("o1", "located_in", "l1"))),
    _Scene("{t1}，{o1}宣布收购{o2}。", "In {t1}, {o1} acquired {o2}.",
           event=("acquisition", "收购", "acquired", (("acquirer", "o1"), ("target", "o2"), ("time", "t1")))),
    _Scene("{p1}于{t1}加入{o1}，担任工程师。", "{p1} joined {o1} as an engineer in {t1}.",
           (("p1", "works_for", "o1"),),
           ("employment", "加入", "joined", (("employee", "p1"), ("employer", "o1"), ("time", "t1")))),
    _Scene("{o1}在{l1}发布了新款{x1}。", "{o1} launched the {x1} in {l1}.",
           (("x1", "produced_by", "o1"),),
           ("launch", "发布", "launched", (("company", "o1"), ("product", "x1")))),
    _Scene("来自{l1}的{p1}和{p2}都在{o1}工作。", "{p1} and {p2} from {l1} both work at {o1}.",
           (("p1", "works_for", "o1"), ("p2", "works_for", "o1"))),
    _Scene("{x1}由{o1}生产，{o1}的创始人是{p1}。", "The {x1} is made by {o1}, whose founder is {p1}.",
           (("x1", "produced_by", "o1"), ("o1", "founded_by", "p1"))),
    _Scene("{p1}的家乡是{l1}。", "The birthplace of {p1} is {l1}.",
           (("p1", "born_in", "l1"),), heldout=True),
    _Scene("{t1}{o1}完成了对{o2}的收购，协议在{l1}签署。", "{o2} was bought by {o1} in {t1} after talks in {l1}.",
           event=("acquisition", "收购", "bought", (("acquirer", "o1"), ("target", "o2"), ("time", "t1"))),
           heldout=True),
    _Scene("{o1}位于{l1}，{p1}在那里工作了很多年。", "{o1} is located in {l1}, where {p1} has worked for years.",
           (("o1", "located_in", "l1"), ("p1", "works_for", "o1"))),
    _Scene("{t1}，{o1}推出了{x1}。", "In {t1}, {o1} released the {x1}.",
           (("x1", "produced_by", "o1"),),
           ("launch", "推出", "released", (("company", "o1"), ("product", "x1"), ("time", "t1"))), heldout=True),
    _Scene("{p1}离开{o1}后，{t1}加入了{o2}。", "{p1} left {o1} and joined {o2} in {t1}.",
           (("p1", "works_for", "o2"),),
           ("employment", "加入", "joined", (("employee", "p1"), ("employer", "o2"), ("time", "t1")))),
    _Scene("{p1}出生于{l1}，后来创立了{o1}。", "Born in {l1}, {p1} later founded {o1}.",
           (("p1", "born_in", "l1"), ("o1", "founded_by", "p1")), heldout=True),
    _Scene("{p1}和{p2}在{l1}见面。", "{p1} met {p2} in {l1}."),
    _Scene("{o1}的{x1}在{l1}很受欢迎。", "The {x1} from {o1} is popular in {l1}.",
           (("x1", "produced_by", "o1"),)),
    _Scene("{l1}的{o1}聘请了{p1}。", "{o1} in {l1} hired {p1}.",
           (("p1", "works_for", "o1"), ("o1", "located_in", "l1")),
           ("employment", "聘请", "hired", (("employee", "p1"), ("employer", "o1"))), heldout=True),
)


def _check_args(task: str, language: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; synthetic data exists for {', '.join(TASKS)}")
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")


def _lang_index(language: str) -> int:
    return LANGUAGES.index(language)


def _slots(scene: _Scene) -> list[str]:
    """Slot names in order of first appearance in the zh pattern (same set in both languages)."""
    names: list[str] = []
    for piece in scene.zh.split("{")[1:]:
        name = piece.split("}")[0]
        if name not in names:
            names.append(name)
    return names


def _labels(scene: _Scene) -> set[str]:
    """Every spelling of every label the scene mentions: canonical keys plus zh and en names."""
    out: set[str] = set()
    for slot in _slots(scene):
        kind = _SLOT_TYPES[slot[0]]
        out.add(kind)
        out.update(_ENTITY_TYPES.get(kind, ()))
    for _, rel, _ in scene.relations:
        out.add(rel)
        out.update(_RELATIONS[rel][:2])
    if scene.event:
        out.add(scene.event[0])
        out.update(_EVENTS[scene.event[0]][:2])
    return out


def _excluded_keys(exclude: Collection[str]) -> set[str]:
    """Canonical keys of every label knocked out by ``exclude``, including labels that depend on an excluded type."""
    keys: set[str] = set()
    for key, names in _ENTITY_TYPES.items():
        if key in exclude or set(names) & set(exclude):
            keys.add(key)
    for key, (zh, en, head, tail) in _RELATIONS.items():
        if {key, zh, en} & set(exclude) or {head, tail} & keys:
            keys.add(key)
    for key, (zh, en, roles) in _EVENTS.items():
        if {key, zh, en} & set(exclude) or {r[3] for r in roles} & keys:
            keys.add(key)
    return keys


def vocabulary(language: str) -> dict[str, tuple[str, ...]]:
    """The closed entity vocabulary of a language, keyed by canonical slot type (``person``, ..., ``time``)."""
    _check_args("NER", language)
    return dict(_VOCAB[language])


def _scene_has(scene: _Scene, task: str) -> bool:
    return {"NER": True, "RE": bool(scene.relations), "EE": scene.event is not None}[task]


def _render(scene: _Scene, task: str, language: str, fill: dict[str, str]) -> dict:
    li = _lang_index(language)
    text = getattr(scene, language).format(**fill)
    if task == "NER":
        seen: set[str] = set()
        ents = []
        for slot in _slots(scene):
            kind = _SLOT_TYPES[slot[0]]
            if kind in _ENTITY_TYPES and fill[slot] not in seen:
                seen.add(fill[slot])
                ents.append({"entity": fill[slot], "entity_type": _ENTITY_TYPES[kind][li]})
        ents.sort(key=lambda e: text.find(e["entity"]))
        return {"text": text, "entity": ents}
    if task == "RE":
        rels = [{"head": fill[h], "relation": _RELATIONS[r][li], "tail": fill[t]} for h, r, t in scene.relations]
        return {"text": text, "relation": rels}
    key, zh_trigger, en_trigger, roles = scene.event  # type: ignore[misc]
    role_names = {r[0]: r[1 + li] for r in _EVENTS[key][2]}
    args = [{"argument": fill[slot], "role": role_names[role]} for role, slot in roles]
    trigger = zh_trigger if language == "zh" else en_trigger
    return {"text": text, "event": [{"event_trigger": trigger, "event_type": _EVENTS[key][li], "arguments": args}]}


def make_records(task: str, language: str, n: int, *, seed: int | random.Random = 0, split: str = "train",
                 exclude: Collection[str] = (), require: Collection[str] = ()) -> list[dict]:
    """Make ``n`` distinct raw records for one task and language.

    Args:
        task: ``"NER"``, ``"RE"`` or ``"EE"``.
        language: ``"zh"`` or ``"en"``.
        n: how many records; each has a different text.
        seed: an int or a ``random.Random``; the same seed gives the same records.
        split: ``"train"`` or ``"test"``; the two use disjoint sentence templates, same entity vocabulary.
        exclude: labels (entity types, relations, event types; any spelling) that must not appear. A scene that
            mentions one is skipped entirely, so the excluded names are never even seen untagged.
        require: if given, only scenes mentioning at least one of these labels are used.

    Raises:
        ValueError: on an unknown task/language/split, or when the filters leave no scene or too few texts.
    """
    _check_args(task, language)
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    dropped = _excluded_keys(exclude)
    scenes = [s for s in _SCENES
              if s.heldout == (split == "test") and _scene_has(s, task)
              and not (_labels(s) & (dropped | set(exclude)))
              and (not require or _labels(s) & set(require))]
    if not scenes:
        raise ValueError(f"no {split} scene for task={task} language={language} "
                         f"exclude={sorted(exclude)} require={sorted(require)}")
    records: list[dict] = []
    texts: set[str] = set()
    misses = 0  # consecutive draws that repeated a text: many in a row means the combinations are exhausted
    while len(records) < n:
        if misses > 5000:
            raise ValueError(f"only about {len(records)} distinct texts possible for these filters; asked for {n}")
        scene = rng.choice(scenes)
        fill: dict[str, str] = {}
        for slot in _slots(scene):
            pool = [v for v in _VOCAB[language][_SLOT_TYPES[slot[0]]] if v not in fill.values()]
            fill[slot] = rng.choice(pool)
        record = _render(scene, task, language, fill)
        if record["text"] in texts:
            misses += 1
            continue
        misses = 0
        texts.add(record["text"])
        records.append(record)
    return records


def make_split(task: str, language: str, n_train: int, n_test: int, *, seed: int = 0,
               exclude: Collection[str] = (), require: Collection[str] = ()) -> tuple[list[dict], list[dict]]:
    """A train set and a held-out set: different sentence templates, the same entity vocabulary.

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
    li = _lang_index(language)
    dropped = _excluded_keys(exclude)
    if task == "NER":
        return [[names[li] for key, names in _ENTITY_TYPES.items() if key not in dropped], [], {}]
    if task == "RE":
        return [[], [v[li] for key, v in _RELATIONS.items() if key not in dropped], {}]
    types: list[str] = []
    roles: list[str] = []
    by_type: dict[str, list[str]] = {}
    for key, (zh, en, role_defs) in _EVENTS.items():
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
    """Text a tiny tokenizer should know well: training sentences, their JSON labels, every name and label.

    Only the *train* templates are used (as ``shared/TINY_MODELS.md`` measured), but every vocabulary entry and label
    name is included once, so a held-out sentence still tokenizes its entities into the same whole pieces.
    """
    rng = random.Random(seed)
    out: list[str] = []
    for language in LANGUAGES:
        for values in _VOCAB[language].values():
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
