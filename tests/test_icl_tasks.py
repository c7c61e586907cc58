"""The ICL tasks are registered like the IE tasks: each parses its own answer format into typed extractions."""

from __future__ import annotations

import pytest

from deepke_llm_core.icl.run import ICLArguments, score_icl
from deepke_llm_core.records import Entity, Event, Relation
from deepke_llm_core.tasks.icl import ICL_TASKS, parse_literal
from deepke_llm_core.viz import highlight_html


def test_ner_answers_in_the_format_the_instruction_asks_for():
    ner = ICL_TASKS["ner"]
    answer = "[{'E': 'person', 'W': 'Tom'}, {'E': 'location', 'W': 'Paris'}, {'E': 'person'}]"
    assert ner.parse_answer(answer) == [Entity.of("Tom", "person"), Entity.of("Paris", "location")]
    assert ner.parse_answer('Sure! Here they are: [{"E": "person", "W": "Ann"}]') == [Entity.of("Ann", "person")]
    assert ner.parse_answer("Sure! Here they are: [{\"E\": \"person\", \"W\": \"Ann\"}]", lenient=False) is None
    assert ner.parse_answer("no entities found") is None and ner.parse_answer("[]") == []


def test_re_rte_ee_and_da_answers():
    pair = {"head_entity": "Tom", "head_type": "person", "tail_entity": "Paris", "tail_type": "city"}
    assert ICL_TASKS["re"].parse_answer("born in.\n(because the text says so)", pair=pair) == [Relation.of("Tom", "born in", "Paris")]
    assert ICL_TASKS["rte"].parse_answer("[['Tom', 'born in', 'Paris'], ['bad']]") == [Relation.of("Tom", "born in", "Paris")]
    ee = ICL_TASKS["ee"].parse_answer("[{'event_type': 'hire', 'arguments': [{'role': 'employee', 'argument': 'Ann'}]}]")
    assert ee == [Event.of("hire", "", [("Ann", "employee")])]
    samples = ("Relation: founded_by\nContext: Ann started Acme in 1990.\nHead Entity: Acme\nHead Type: organization\n"
               "Tail Entity: Ann\nTail Type: person\nRelation: founded_by\nContext: Bob ran.\nHead Entity: Zed\n"
               "Head Type: organization\nTail Entity: Bob\nTail Type: person")
    assert ICL_TASKS["da"].parse_answer(samples) == [Relation.of("Acme", "founded_by", "Ann")]  # Zed is not in its context


def test_answers_that_would_crash_a_naive_parser_are_parse_errors():
    parse_literal("[" * 2000 + "]" * 2000)  # deep nesting: no RecursionError escapes
    assert ICL_TASKS["ner"].parse_answer("[" * 2000) is None
    assert ICL_TASKS["rte"].parse_answer(None) is None


def test_icl_answers_are_highlighted_and_scored_like_ie_answers():
    text = "Tom lives in Paris."
    extractions = ICL_TASKS["ner"].parse_answer("[{'E': 'person', 'W': 'Tom'}, {'E': 'person', 'W': 'Bob'}]")
    html = highlight_html(text, "NER", extractions)
    assert ">Tom</mark>" in html and "Not in text (1)" in html
    args = ICLArguments(task="ner", engine="ChatGPT")
    records = [{"text": text, "entity": [{"entity": "Tom", "entity_type": "person"},
                                         {"entity": "Paris", "entity_type": "location"}],
                "output": "[{'E': 'person', 'W': 'Tom'}, {'E': 'person', 'W': 'Bob'}]"},
               {"text": "Ann ran.", "entity": [{"entity": "Ann", "entity_type": "person"}], "output": "I cannot."}]
    scores = score_icl(args, records)
    assert (scores["tp"], scores["pred"], scores["gold"], scores["parse_errors"]) == (1, 2, 3, 1)
    assert scores["F1"] == pytest.approx(40.0)
    assert score_icl(args, [{"text": "x", "output": "[]"}]) is None  # no annotation: nothing to score
