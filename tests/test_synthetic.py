"""Synthetic raw IE records: SPEC §1.3 formats, closed vocabulary, disjoint held-out sentences, type filters."""

import json
import random

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
def test_heldout_sentences_differ_but_vocabulary_is_shared(task, language):
    train, test = synthetic.make_split(task, language, 150, 60, seed=0)
    assert not {r["text"] for r in train} & {r["text"] for r in test}
    vocab = {v for values in synthetic.vocabulary(language).values() for v in values}
    test_args = {s for r in test for s in _strings(task, r) if s in vocab}
    train_args = {s for r in train for s in _strings(task, r)}
    assert test_args and test_args <= vocab
    assert len(test_args & train_args) / len(test_args) > 0.8  # held-out entities recur from training
    # every label of the schema is exercised by both splits
    schema = synthetic.schema_lines(task, language)
    universe = set(schema[0] or schema[1])
    assert set().union(*(_labels(task, r) for r in train)) == universe
    assert set().union(*(_labels(task, r) for r in test)) == universe


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
    product_names = set(synthetic.vocabulary("zh")["product"])
    for task in synthetic.TASKS:
        for split in ("train", "test"):
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


@pytest.mark.parametrize("language", synthetic.LANGUAGES)
def test_no_entity_is_a_substring_of_another(language):
    names = [v for values in synthetic.vocabulary(language).values() for v in values]
    assert not [(a, b) for a in names for b in names if a != b and a in b]


def test_errors_are_specific():
    with pytest.raises(ValueError, match="unknown task"):
        synthetic.make_records("KG", "zh", 1)
    with pytest.raises(ValueError, match="unknown language"):
        synthetic.make_records("NER", "fr", 1)
    with pytest.raises(ValueError, match="unknown split"):
        synthetic.make_records("NER", "zh", 1, split="dev")
    with pytest.raises(ValueError, match="distinct texts"):
        synthetic.make_records("NER", "zh", 1000, split="test", require={"产品"})  # one scene, 288 texts
    with pytest.raises(ValueError, match="no test scene"):
        synthetic.make_records("EE", "zh", 1, split="test", require={"nonexistent"})


def test_corpus_texts_is_deterministic_and_covers_vocabulary():
    corpus = synthetic.corpus_texts(n_per_task=20)
    assert corpus == synthetic.corpus_texts(n_per_task=20)
    joined = "\n".join(corpus)
    assert all(v in joined for lang in synthetic.LANGUAGES for vs in synthetic.vocabulary(lang).values() for v in vs)
