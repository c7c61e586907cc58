"""The ontology and sentence templates ("scenes") of ``synthetic``: data, kept apart from the generator's logic.

A scene is one sentence pattern in both languages. Its slots are named by a letter for the type and a number
(``{p1}`` person, ``{o2}`` second organisation...); it lists the relations between slots and at most one event. The
training scenes are what the tiny base learns from; the new scenes are sentence styles it never sees, the "new
domain" of the quickstart (several of them mention a product, the entity type held out of the base).
"""

from __future__ import annotations

from dataclasses import dataclass

# Canonical key -> (zh name, en name). "time" is a slot type used by events only; it is not an NER type.
ENTITY_TYPES = {
    "person": ("人物", "person"),
    "location": ("地点", "location"),
    "organization": ("组织机构", "organization"),
    "product": ("产品", "product"),
}
# relation key -> (zh, en, head slot type, tail slot type)
RELATIONS = {
    "works_for": ("就职于", "works for", "person", "organization"),
    "born_in": ("出生地", "born in", "person", "location"),
    "located_in": ("位于", "located in", "organization", "location"),
    "founded_by": ("创始人", "founded by", "organization", "person"),
    "produced_by": ("生产商", "produced by", "product", "organization"),
}
# event key -> (zh name, en name, ((role key, zh role, en role, slot type), ...))
EVENTS = {
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
SLOT_TYPES = {"p": "person", "l": "location", "o": "organization", "x": "product", "t": "time"}


@dataclass(frozen=True)
class Scene:
    """One sentence pattern: slots ``{p1}``, ``{o2}``... (letter = type), relations and an optional event."""

    zh: str
    en: str
    relations: tuple[tuple[str, str, str], ...] = ()  # (head slot, relation key, tail slot)
    event: tuple[str, str, str, tuple[tuple[str, str], ...]] | None = None  # (key, zh trigger, en trigger, roles)


TRAIN_SCENES = (
    Scene("{p1}出生在{l1}，现在就职于{o1}。", "{p1} was born in {l1} and now works for {o1}.",
          (("p1", "born_in", "l1"), ("p1", "works_for", "o1"))),
    Scene("{o1}由{p1}创办，总部位于{l1}。", "{o1} was founded by {p1} and is based in {l1}.",
          (("o1", "founded_by", "p1"), ("o1", "located_in", "l1"))),
    Scene("{t1}，{o1}宣布收购{o2}。", "In {t1}, {o1} acquired {o2}.",
          event=("acquisition", "收购", "acquired", (("acquirer", "o1"), ("target", "o2"), ("time", "t1")))),
    Scene("{p1}于{t1}加入{o1}，担任工程师。", "{p1} joined {o1} as an engineer in {t1}.",
          (("p1", "works_for", "o1"),),
          ("employment", "加入", "joined", (("employee", "p1"), ("employer", "o1"), ("time", "t1")))),
    Scene("{o1}在{l1}发布了新款{x1}。", "{o1} launched the {x1} in {l1}.",
          (("x1", "produced_by", "o1"),),
          ("launch", "发布", "launched", (("company", "o1"), ("product", "x1")))),
    Scene("来自{l1}的{p1}和{p2}都在{o1}工作。", "{p1} and {p2} from {l1} both work at {o1}.",
          (("p1", "works_for", "o1"), ("p2", "works_for", "o1"))),
    Scene("{x1}由{o1}生产，{o1}的创始人是{p1}。", "The {x1} is made by {o1}, whose founder is {p1}.",
          (("x1", "produced_by", "o1"), ("o1", "founded_by", "p1"))),
    Scene("{o1}位于{l1}，{p1}在那里工作了很多年。", "{o1} is located in {l1}, where {p1} has worked for years.",
          (("o1", "located_in", "l1"), ("p1", "works_for", "o1"))),
    Scene("{p1}离开{o1}后，{t1}加入了{o2}。", "{p1} left {o1} and joined {o2} in {t1}.",
          (("p1", "works_for", "o2"),),
          ("employment", "加入", "joined", (("employee", "p1"), ("employer", "o2"), ("time", "t1")))),
    Scene("{p1}和{p2}在{l1}见面。", "{p1} met {p2} in {l1}."),
    Scene("{o1}的{x1}在{l1}很受欢迎。", "The {x1} from {o1} is popular in {l1}.",
          (("x1", "produced_by", "o1"),)),
    Scene("{t1}，{o1}聘用了{p1}。", "{o1} hired {p1} in {t1}.",
          (("p1", "works_for", "o1"),),
          ("employment", "聘用", "hired", (("employee", "p1"), ("employer", "o1"), ("time", "t1")))),
    Scene("{p1}从{l1}搬到了{l2}。", "{p1} moved from {l1} to {l2}."),
    Scene("{o1}与{o2}在{l1}签署了协议。", "{o1} and {o2} signed a deal in {l1}."),
    Scene("{t1}，{o1}推出了由{p1}设计的{x1}。", "In {t1}, {o1} announced the {x1}, designed by {p1}.",
          (("x1", "produced_by", "o1"),),
          ("launch", "推出", "announced", (("company", "o1"), ("product", "x1"), ("time", "t1")))),
    Scene("{o1}的创始人{p1}出生于{l1}。", "{p1}, the founder of {o1}, was born in {l1}.",
          (("o1", "founded_by", "p1"), ("p1", "born_in", "l1"))),
    Scene("{o1}于{t1}接管了{o2}。", "{o1} took over {o2} in {t1}.",
          event=("acquisition", "接管", "took over", (("acquirer", "o1"), ("target", "o2"), ("time", "t1")))),
)

NEW_SCENES = (
    Scene("{p1}的家乡是{l1}。", "The birthplace of {p1} is {l1}.",
          (("p1", "born_in", "l1"),)),
    Scene("{t1}{o1}完成了对{o2}的收购，协议在{l1}签署。", "{o2} was bought by {o1} in {t1} after talks in {l1}.",
          event=("acquisition", "收购", "bought", (("acquirer", "o1"), ("target", "o2"), ("time", "t1")))),
    Scene("{t1}，{o1}上市了{x1}。", "In {t1}, {o1} released the {x1}.",
          (("x1", "produced_by", "o1"),),
          ("launch", "上市", "released", (("company", "o1"), ("product", "x1"), ("time", "t1")))),
    Scene("{p1}出生于{l1}，后来创立了{o1}。", "Born in {l1}, {p1} later founded {o1}.",
          (("p1", "born_in", "l1"), ("o1", "founded_by", "p1"))),
    Scene("{l1}的{o1}聘请了{p1}。", "{o1} in {l1} hired {p1}.",
          (("p1", "works_for", "o1"), ("o1", "located_in", "l1")),
          ("employment", "聘请", "hired", (("employee", "p1"), ("employer", "o1")))),
    Scene("{p1}在{l1}买了{x1}。", "{p1} bought a {x1} in {l1}."),
    Scene("{o1}的评论员称赞了{o2}生产的{x1}。", "Critics at {o1} praised the {x1} made by {o2}.",
          (("x1", "produced_by", "o2"),)),
    Scene("{o1}将从{t1}起在{l1}销售{x1}。", "{o1} will sell the {x1} in {l1} from {t1}."),
    Scene("{o1}的{p1}在{l1}展示了新款{x1}。", "{p1} from {o1} showed the new {x1} in {l1}.",
          (("p1", "works_for", "o1"), ("x1", "produced_by", "o1"))),
)
