"""Synthetic raw IE records: SPEC §1.3 formats, held-out names never in training, new-template split, type filters."""

import json
import random
import re

import pytest

from deepke_llm_core import synthetic

CASES = [(t, lang) for t in synthetic.TASKS for lang in synthetic.LANGUAGES]


def _strings(task, record):
    """Every extracted string of a record (entities, heads/tails, triggers, arguments)."""
    if task == "NER":
        return [e["entity"] for e in record["entity"]]
    if task == "RE":
        return [s for r in record["relation"] for s in (r["head"], r["tail"])]
    return [s for e in record["event"] for s in [e["event_trigger"], *(a["argument"] for a in e["arguments"])]]


def _labels(task, record):
    if task == "NER":
        return {e["entity_type"] for e in record["entity"]}
    if task == "RE":
        return {r["relation"] for r in record["relation"]}
    return {e["event_type"] for e in record["event"]}


@pytest.mark.parametrize("task,language", CASES)
def test_records_have_the_raw_format_of_spec(task, language):
    for record in synthetic.make_records(task, language, 40, seed=3):
        field = {"NER": "entity", "RE": "relation", "EE": "event"}[task]
        assert list(record) == ["text", field]
        assert isinstance(record["text"], str) and record[field]
        for item in record[field]:
            if task == "NER":
                assert list(item) == ["entity", "entity_type"]
            elif task == "RE":
                assert list(item) == ["head", "relation", "tail"]
            else:
                assert list(item) == ["event_trigger", "event_type", "arguments"]
                assert all(list(a) == ["argument", "role"] for a in item["arguments"])
        assert all(s and s in record["text"] for s in _strings(task, record))


@pytest.mark.parametrize("task,language", CASES)
def test_deterministic_and_distinct(task, language):
    a = synthetic.make_records(task, language, 30, seed=7)
    assert a == synthetic.make_records(task, language, 30, seed=7)
    assert a == synthetic.make_records(task, language, 30, seed=random.Random(7))
    assert a != synthetic.make_records(task, language, 30, seed=8)
    assert len({r["text"] for r in a}) == 30


@pytest.mark.parametrize("task,language", CASES)
def test_held_out_names_never_occur_in_training_sentences(task, language):
    train, test = synthetic.make_split(task, language, 400, 60, seed=0)
    train_text = "\n".join(r["text"] for r in train)
    test_names = {s for r in test for s in _strings(task, r)} - {e["event_trigger"] for r in test for e in r.get("event", [])}
    assert len(test_names) > 20
    assert not [name for name in test_names if name in train_text]  # not one held-out name, not even inside a word
    held_out = {v for values in synthetic.vocabulary(language, "test").values() for v in values}
    trained = {v for values in synthetic.vocabulary(language, "train").values() for v in values}
    assert test_names <= held_out and not held_out & trained
    assert synthetic.vocabulary(language, "new") == synthetic.vocabulary(language, "test")
    # every label of the schema is exercised by every split
    schema = synthetic.schema_lines(task, language)
    universe = set(schema[0] or schema[1])
    new = synthetic.make_records(task, language, 150, seed=0, split="new")
    for records in (train, test, new):
        assert set().union(*(_labels(task, r) for r in records)) == universe


def test_test_split_reuses_training_templates_and_new_split_does_not():
    def template(record, language):  # the sentence with every name and date replaced by a slot marker
        text = record["text"]
        for name in sorted(_strings("NER", record), key=len, reverse=True):
            text = text.replace(name, "#")
        return re.sub(r"\d{4}年(\d+月)?|([A-Z][a-z]+ )?\d{4}", "@", text)

    for language in synthetic.LANGUAGES:
        train, test = synthetic.make_split("NER", language, 600, 200, seed=1)
        new = synthetic.make_records("NER", language, 200, seed=1, split="new")
        seen = {template(r, language) for r in train}
        assert {template(r, language) for r in test} <= seen
        assert not {template(r, language) for r in new} & seen


def test_make_split_test_set_does_not_depend_on_train_size():
    assert synthetic.make_split("NER", "zh", 10, 5)[1] == synthetic.make_split("NER", "zh", 99, 5)[1]


@pytest.mark.parametrize("task,language", CASES)
def test_labels_are_those_of_the_schema(task, language):
    types, roles, by_type = synthetic.schema_lines(task, language)
    for record in synthetic.make_records(task, language, 60, seed=1, split="test"):
        if task == "NER":
            assert _labels(task, record) <= set(types)
        elif task == "RE":
            assert _labels(task, record) <= set(roles)
        else:
            for event in record["event"]:
                assert {a["role"] for a in event["arguments"]} <= set(by_type[event["event_type"]])


@pytest.mark.parametrize("language", synthetic.LANGUAGES)
def test_schema_file_shapes(language):
    ner, re_, ee = (synthetic.schema_text(t, language).splitlines() for t in ("NER", "RE", "EE"))
    assert [json.loads(x) for x in ner[1:]] == [[], {}] and len(json.loads(ner[0])) == 4
    assert json.loads(re_[0]) == [] and len(json.loads(re_[1])) == 5 and json.loads(re_[2]) == {}
    types, roles, by_type = (json.loads(x) for x in ee)
    assert list(by_type) == types and {r for rs in by_type.values() for r in rs} == set(roles)
    assert synthetic.schema_text("NER", language).endswith("\n") and len(ner) == 3


@pytest.mark.parametrize("spelling", ["product", "产品"])
def test_exclude_a_type_removes_it_everywhere(spelling):
    for task in synthetic.TASKS:
        for split in synthetic.SPLITS:
            product_names = set(synthetic.vocabulary("zh", split)["product"])
            try:
                records = synthetic.make_records(task, "zh", 50, seed=2, split=split, exclude={spelling})
            except ValueError:
                continue  # no scene left for this task/split: also "never seen"
            assert not any(name in r["text"] for r in records for name in product_names)
    assert "产品" not in synthetic.schema_lines("NER", "zh", exclude={spelling})[0]
    assert "生产商" not in synthetic.schema_lines("RE", "zh", exclude={spelling})[1]
    assert "产品发布" not in synthetic.schema_lines("EE", "zh", exclude={spelling})[0]
    assert "组织机构" in synthetic.schema_lines("NER", "zh", exclude={spelling})[0]


def test_require_a_type_and_exclude_relations_by_name():
    records = synthetic.make_records("NER", "en", 40, seed=0, require={"product"})
    assert all("product" in _labels("NER", r) for r in records)
    records = synthetic.make_records("RE", "en", 40, seed=0, exclude={"born in"})
    assert all("born in" not in _labels("RE", r) for r in records)
    assert "born in" not in synthetic.schema_lines("RE", "en", exclude={"born in"})[1]


@pytest.mark.parametrize("language", ["zh", "en"])
def test_novel_names_are_invented_and_never_held_out(language):
    novel = synthetic.vocabulary(language, "novel")
    held_out = {v for values in synthetic.vocabulary(language, "test").values() for v in values}
    trained = {v for values in synthetic.vocabulary(language, "train").values() for v in values}
    names = {v for kind, values in novel.items() if kind != "time" for v in values}
    assert len(names) >= 4 * 1500 and not names & held_out and not names & trained
    assert novel["time"] == synthetic.vocabulary(language, "train")["time"]  # held-out years stay held out
    records = synthetic.make_records("NER", language, 50, seed=5, split="novel")
    assert records == synthetic.make_records("NER", language, 50, seed=5, split="novel")
    assert all(e["entity"] in r["text"] and e["entity"] in names | set(novel["time"]) for r in records for e in r["entity"])


@pytest.mark.parametrize("task,language", CASES)
def test_no_name_in_a_record_is_inside_another(task, language):
    """Pools overlap (张伟 / 张伟明, Port Oak / Port Oak Falls is not possible but 华信 stems repeat), so the check is per
    record: within one sentence every span is unambiguous."""
    for split in synthetic.SPLITS:
        for record in synthetic.make_records(task, language, 200, seed=4, split=split):
            names = set(_strings(task, record))
            assert not [(a, b) for a in names for b in names if a != b and a in b], record


def test_errors_are_specific():
    with pytest.raises(ValueError, match="unknown task"):
        synthetic.make_records("KG", "zh", 1)
    with pytest.raises(ValueError, match="unknown language"):
        synthetic.make_records("NER", "fr", 1)
    with pytest.raises(ValueError, match="unknown split"):
        synthetic.make_records("NER", "zh", 1, split="dev")
    with pytest.raises(ValueError, match="unknown split"):
        synthetic.vocabulary("zh", "dev")
    with pytest.raises(ValueError, match="no test scene"):
        synthetic.make_records("EE", "zh", 1, split="test", require={"nonexistent"})


def test_too_few_combinations_is_an_error(monkeypatch):
    pools = {"person": ("张伟", "李娜"), "location": ("北京",), "organization": ("华信公司",), "product": ("星光手表",),
             "time": ("2020年",)}
    monkeypatch.setattr(synthetic, "_pools", lambda language, held_out: pools)
    assert len(synthetic.make_records("NER", "zh", 2, split="new", require={"产品"})) == 2
    with pytest.raises(ValueError, match="distinct texts"):
        synthetic.make_records("NER", "zh", 50, split="new", require={"产品"})


def test_corpus_texts_is_deterministic_covers_training_names_and_no_held_out_name():
    corpus = synthetic.corpus_texts(n_per_task=20)
    assert corpus == synthetic.corpus_texts(n_per_task=20)
    joined = "\n".join(corpus)
    for language in synthetic.LANGUAGES:
        assert all(v in joined for vs in synthetic.vocabulary(language).values() for v in vs)
        held_out = [v for vs in synthetic.vocabulary(language, "test").values() for v in vs]
        assert not [v for v in held_out if v in joined]
