"""Alignment finds every mention: all occurrences in order, CJK and full-width text, fuzzy matches, strings not in
the text, and the same alignment behind grounding, evaluate --grounded_only and the HTML view."""

from __future__ import annotations

import json

import pytest

from deepke_llm_core.align import TextIndex, align_extractions, normalize, not_in_text, occurrences
from deepke_llm_core.evaluate import evaluate_records
from deepke_llm_core.predict.grounding import ground_text
from deepke_llm_core.records import Entity, Event, Relation
from deepke_llm_core.viz import highlight_html

ZH = "张伟（北京）说：“你好！”后来张伟去了𠮷野家。ＡＢＣ公司在北京。"


def places(extractions):
    return [(m.start, m.end, m.status) for e in extractions for m in e.mentions()]


def test_repeated_strings_take_successive_occurrences_in_order():
    text = "Tom met Ann. Tom left. Tom came back."
    aligned = align_extractions([Entity.of("Tom", "person")] * 3 + [Entity.of("Ann", "person")], text)
    assert places(aligned) == [(0, 3, "exact"), (13, 16, "exact"), (23, 26, "exact"), (8, 11, "exact")]
    assert [text[s:e] for s, e, _ in places(aligned)] == ["Tom", "Tom", "Tom", "Ann"]
    # named more often than it occurs: the extra ones share the last occurrence (the answer's multiset is kept)
    assert places(align_extractions([Entity.of("Ann", "person")] * 2, text)) == [(8, 11, "exact")] * 2


def test_every_mention_marks_each_occurrence_once():
    text = "Tom met Ann. Tom left. Tom came back."
    aligned = align_extractions([Entity.of("Tom", "person"), Entity.of("Tom", "person"), Entity.of("Bob", "person")],
                                text, every_mention=True)
    assert places(aligned) == [(0, 3, "exact"), (13, 16, "exact"), (23, 26, "exact"), (None, None, "not_found")]


def test_chinese_full_width_punctuation_and_astral_characters():
    aligned = align_extractions([Entity.of("张伟", "人物"), Entity.of("北京", "地点"), Entity.of("𠮷野家", "组织机构"),
                                 Entity.of("ABC公司", "组织机构"), Entity.of("(北京)", "地点")], ZH, every_mention=True)
    found = {(e.type, m.text, ZH[m.start:m.end], m.status) for e in aligned for m in e.mentions()}
    assert found == {("人物", "张伟", "张伟", "exact"), ("地点", "北京", "北京", "exact"),
                     ("组织机构", "𠮷野家", "𠮷野家", "exact"),  # one code point per character, also outside the BMP
                     ("组织机构", "ABC公司", "ＡＢＣ公司", "fuzzy"),  # full-width letters
                     ("地点", "(北京)", "（北京）", "fuzzy")}  # full-width brackets
    assert [m.start for e in aligned if e.type == "人物" for m in e.mentions()] == [0, ZH.index("后来张伟") + 2]
    assert len([e for e in aligned if e.text.text == "北京"]) == 2


def test_normalised_matches_are_fuzzy_and_keep_the_texts_own_spelling():
    text = "Alice  Smith\nflew to TOKYO with ｂｏｂ."
    aligned = align_extractions([Entity.of("Alice Smith", "person"), Entity.of("Tokyo", "location"),
                                 Entity.of("Bob", "person"), Entity.of("Kyoto", "location")], text)
    assert [(text[m.start:m.end] if m.start is not None else None, m.status) for e in aligned for m in e.mentions()] == [
        ("Alice  Smith", "fuzzy"), ("TOKYO", "fuzzy"), ("ｂｏｂ", "fuzzy"), (None, "not_found")]
    assert normalize(" Ａｌｉｃｅ\u3000 SMITH ") == "alice smith"


def test_whole_words_are_preferred_over_a_match_inside_a_word():
    assert occurrences("Tomas met Tom.", "Tom") == [(10, 13)]
    assert occurrences("Tomas met Tomy.", "Tom") == [(0, 3), (10, 13)]  # no whole word: partial matches still count
    assert occurrences("张伟和张伟", "张伟") == [(0, 2), (3, 5)]  # no word boundaries in Chinese


def test_a_relations_second_string_is_the_occurrence_nearest_its_first():
    text = "Tom works for Acme. Ann works for Acme."
    (relation,) = align_extractions([Relation.of("Ann", "works for", "Acme")], text)
    assert (relation.head.start, relation.tail.start) == (20, 34)
    event = Event.of("hire", "hired", [("Acme", "employer")])
    (aligned,) = align_extractions([event], "Acme grew. Later Acme hired Ann.")
    assert [(m.text, m.start) for m in aligned.mentions()] == [("hired", 22), ("Acme", 17)]


def test_a_blank_string_is_not_in_the_text():
    aligned = align_extractions([Entity.of("", "person"), Entity.of("  ", "person"), Relation.of("Tom", "met", "")],
                                "Tom met Ann.", every_mention=True)
    assert places(aligned) == [(None, None, "not_found")] * 2 + [(0, 3, "exact"), (None, None, "not_found")]
    assert all(not_in_text(e, "Tom met Ann.") for e in aligned)


def test_not_in_text_and_one_index_per_text():
    index = TextIndex("Tom met Ann.")
    assert not not_in_text(Entity.of("tom", "person"), index) and not_in_text(Relation.of("Tom", "met", "Bob"), index)
    assert index.find("ann") == ([(8, 11)], "fuzzy") and index.find("") == ([], "not_found")


def test_grounding_lists_every_occurrence_and_fuzzy_ones():
    grounding = ground_text('{"person": ["Tom", "ann", "Bob"]}', "Tom met Ann. Tom left.")
    assert grounding["spans"] == [{"text": "Tom", "start": 0, "end": 3},
                                  {"text": "ann", "start": 8, "end": 11, "status": "fuzzy"},
                                  {"text": "Tom", "start": 13, "end": 16}]
    assert grounding["not_found"] == ["Bob"]


def test_grounded_only_keeps_fuzzy_matches_and_drops_strings_not_in_the_text():
    text = "Maria Garcia joined Deutsche Bank."
    record = {"id": "1", "task": "NER", "label": json.dumps([{"entity": "MARIA GARCIA", "entity_type": "person"}]),
              "instruction": json.dumps({"instruction": "...", "schema": ["person"], "input": text}),
              "output": '{"person": ["MARIA GARCIA", "Tim Cook"]}'}
    assert evaluate_records([record], "NER")["total"]["P"] == 50.0
    assert evaluate_records([record], "NER", grounded_only=True)["total"]["P"] == 100.0


@pytest.mark.parametrize("extraction", [[Entity.of("TOKYO", "location"), Entity.of("Kyoto", "location")],
                                        {"location": ["TOKYO", "Kyoto"]}])
def test_the_html_view_draws_fuzzy_mentions_and_lists_strings_not_in_the_text(extraction):
    text = "She flew to Tokyo."
    if isinstance(extraction, list):
        extraction = align_extractions(extraction, text)
    html = highlight_html(text, "NER", extraction)
    assert ">Tokyo</mark>" in html and "Not in text (1)" in html and "location: Kyoto" in html
