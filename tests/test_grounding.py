"""Grounding: offsets for extracted strings, hallucinated spans flagged, and optionally dropped when scoring."""

from __future__ import annotations

import json

from deepke_llm_core.evaluate import evaluate_records
from deepke_llm_core.predict.grounding import ground_record, ground_text

TEXT = "Apple was founded by Steve Jobs in Cupertino."


def instruction(schema):
    return json.dumps({"instruction": "...", "schema": schema, "input": TEXT})


def test_offsets_and_hallucinations_for_each_answer_shape():
    ner = ground_text('{"person": ["Steve Jobs", "Tim Cook"], "location": ["Cupertino"]}', TEXT)
    assert ner["spans"] == [{"text": "Steve Jobs", "start": 21, "end": 31}, {"text": "Cupertino", "start": 35, "end": 44}]
    assert ner["not_found"] == ["Tim Cook"]
    relation = ground_text('{"founder": [{"subject": "Apple", "object": "Jobs"}]}', TEXT)
    assert [s["text"] for s in relation["spans"]] == ["Apple", "Jobs"] and TEXT[21 + 6:31] == "Jobs"
    event = ground_text('{"Found": [{"trigger": "founded", "arguments": {"founder": "Steve Jobs", "time": "NAN"}}]}', TEXT)
    assert [s["text"] for s in event["spans"]] == ["founded", "Steve Jobs"] and not event["not_found"]
    kg = ground_text('{"company": {"Apple": {"founder": ["Steve Jobs", "Wozniak"]}}}', TEXT, task="KG")
    assert [s["text"] for s in kg["spans"]] == ["Apple", "Steve Jobs"] and kg["not_found"] == ["Wozniak"]
    assert ground_text("not json", TEXT)["parse_error"]


def test_ground_record_adds_a_field_that_evaluation_ignores_unless_asked():
    label = json.dumps([{"entity": "Steve Jobs", "entity_type": "person"}])
    record = {"id": "1", "task": "NER", "instruction": instruction(["person"]), "label": label,
              "output": '{"person": ["Steve Jobs", "Steve Wozniak"]}'}
    grounded = ground_record(record)
    assert grounded["grounding"]["not_found"] == ["Steve Wozniak"]
    plain = evaluate_records([grounded], "NER")["total"]
    assert (plain["P"], plain["R"]) == (50.0, 100.0)
    strict = evaluate_records([grounded], "NER", grounded_only=True)["total"]
    assert (strict["P"], strict["R"]) == (100.0, 100.0)
