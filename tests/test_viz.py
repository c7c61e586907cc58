"""Extractions drawn in their text (viz.highlight_html, diff_html, save_html), read back with an HTML parser."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from deepke_llm_core.convert import ConvertConfig, convert_file
from deepke_llm_core.evaluate import evaluate_records, reference_predictions
from deepke_llm_core.resources import data_dir
from deepke_llm_core.tasks import TASKS
from deepke_llm_core.records import Relation
from deepke_llm_core.viz import diff_html, diff_tuples, highlight_html, save_html


class Picture(HTMLParser):
    """What a reader sees: the text (labels left out), each highlight's text by mark id, labels, list items."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.text, self.marks, self.labels, self.items, self.mark_classes = "", {}, [], [], {}
        self.raw_tags: list[str] = []
        self._stack: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.raw_tags.append(tag)
        self._stack.append((tag, attrs))
        if tag == "span" and "dk-label" in attrs.get("class", ""):
            self.labels.append(attrs)
        if tag == "li":
            self.items.append([attrs.get("class", ""), ""])

    def handle_endtag(self, tag):
        while self._stack and self._stack.pop()[0] != tag:
            pass

    def _inside(self, cls: str) -> dict | None:
        return next((a for t, a in reversed(self._stack) if cls in a.get("class", "").split()), None)

    def handle_data(self, data):
        if self._inside("dk-label") or any(t == "style" for t, _ in self._stack):
            return
        if self._inside("dk-text"):
            self.text += data
            mark = self._inside("dk-mark")
            if mark:
                for mark_id in mark["data-mark"].split():
                    self.marks[mark_id] = self.marks.get(mark_id, "") + data
                    self.mark_classes.setdefault(mark_id, set()).update(mark["class"].split())
        elif self._stack and self._stack[-1][0] == "li":
            self.items[-1][1] += data

    def highlighted(self) -> list[tuple[str, str]]:
        """(highlighted text, label) per highlight, in text order."""
        return [(self.marks[label["data-mark"]], label["data-type"]) for label in self.labels]

    def listed(self, cls: str) -> list[str]:
        return [text for classes, text in self.items if cls in classes.split()]


def test_text_and_labels_are_escaped():
    text = 'Tom <script>alert("x")</script> & "Ann" visited <Paris>.'
    html = highlight_html(text, "NER", {'<img src=x onerror="boom">': ["Tom"], "person": ['"Ann"', "<Paris>"],
                                        "location": ["</div><b>"]}, title="<i>title</i>")
    assert "<script>" not in html and "<img" not in html and "<Paris>" not in html and "<i>" not in html
    assert "</div><b>" not in html
    picture = Picture(html)
    assert picture.text == text  # every character survives, escaped, in order
    assert picture.highlighted() == [("Tom", '<img src=x onerror="boom">'), ('"Ann"', "person"), ("<Paris>", "person")]
    assert picture.listed("dk-missing") == ["location: </div><b>"]


def test_chinese_spans_are_highlighted_by_character():
    text = "周杰出生在成都，现在就职于阿里巴巴。"
    picture = Picture(highlight_html(text, "NER", {"人物": ["周杰"], "地点": ["成都"], "组织机构": ["阿里巴巴"]}))
    assert picture.text == text
    assert picture.highlighted() == [("周杰", "人物"), ("成都", "地点"), ("阿里巴巴", "组织机构")]
    assert not picture.listed("dk-missing")


def test_nested_and_crossing_spans_both_stay_whole():
    text = "The Bank of China report on New York Times Square."
    answer = {"organization": ["Bank of China", "New York Times"], "location": ["China", "York Times Square"]}
    picture = Picture(highlight_html(text, "NER", answer))
    assert picture.text == text
    assert sorted(picture.highlighted()) == sorted([("Bank of China", "organization"), ("China", "location"),
                                                    ("New York Times", "organization"), ("York Times Square", "location")])
    nested = next(label["data-mark"] for label in picture.labels if label["data-text"] == "China")
    assert "dk-overlap" in picture.mark_classes[nested]


def test_every_occurrence_is_highlighted_and_unknown_spans_are_listed_apart():
    text = "Tom met Tom's sister in Paris."
    picture = Picture(highlight_html(text, "NER", {"person": ["Tom", "Tim Cook"], "location": ["Paris"]}))
    assert picture.highlighted() == [("Tom", "person"), ("Tom", "person"), ("Paris", "location")]
    assert picture.listed("dk-missing") == ["person: Tim Cook"]
    assert "Tim Cook" not in picture.marks.values()


def test_relations_are_listed_with_both_ends_highlighted():
    text = "Apple was founded by Steve Jobs in Cupertino."
    answer = {"founder": [{"subject": "Apple", "object": "Steve Jobs"}], "located in": [{"head": "Apple", "tail": "Paris"}]}
    picture = Picture(highlight_html(text, "RE", answer))
    assert ("Apple", "founder: subject") in picture.highlighted() and ("Steve Jobs", "founder: object") in picture.highlighted()
    assert picture.listed("dk-item")[:2] == ["Apple \u2192 founder \u2192 Steve Jobs", "Apple \u2192 located in \u2192 Paris"]
    assert picture.listed("dk-missing") == ["located in: object: Paris"]


def test_events_show_trigger_and_argument_roles():
    text = "Microsoft completed its acquisition of Activision in 2023."
    answer = {"Business-Acquisition": [{"trigger": "acquisition",
                                        "arguments": {"acquirer": "Microsoft", "acquired": ["Activision"], "price": "NAN"}}]}
    picture = Picture(highlight_html(text, "EE", answer))
    assert picture.highlighted() == [("Microsoft", "acquirer"), ("acquisition", "Business-Acquisition"), ("Activision", "acquired")]
    trigger = next(label["data-mark"] for label in picture.labels if label["data-text"] == "acquisition")
    assert "dk-trigger" in picture.mark_classes[trigger]
    assert picture.listed("dk-item") == ["Business-Acquisition: trigger \u201cacquisition\u201d (acquired = Activision; acquirer = Microsoft)"]


def test_an_output_that_is_not_json_is_said_so():
    html = highlight_html("Tom", "NER", '{"person": ["Tom"')  # lenient mode mends a cut-off answer
    assert Picture(html).highlighted() == [("Tom", "person")]
    strict = highlight_html("Tom", "NER", "I found Tom.", lenient=False)
    assert "not a JSON object" in strict and not Picture(strict).labels


def test_colours_are_stable_per_type():
    def colours(html):
        return dict(re.findall(r'data-type="([^"]+)" style="background:([^"]+)"', html))

    first = colours(highlight_html("Tom in Paris", "NER", {"person": ["Tom"], "location": ["Paris"]}))
    second = colours(highlight_html("Paris, said Ann", "NER", {"location": ["Paris"], "person": ["Ann"]}))
    assert first == second and first["person"] != first["location"]


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("language", ["en", "zh"])
def test_reference_answers_of_every_task_are_found_in_their_text(task, language, tmp_path):
    """The converter's own answers for the bundled samples: every string is in the text, nothing is 'not in text'."""
    src = data_dir() / language / task
    paths = {}
    for split in ("train", "test"):
        paths[split] = tmp_path / f"{split}.json"
        convert_file(ConvertConfig(src_path=str(src / "sample.json"), tgt_path=str(paths[split]), task=task, language=language,
                                   schema_path=str(src / "schema.json"), split=split, split_num=4, progress=False))
    records = reference_predictions(str(paths["train"]), str(paths["test"]))
    shown = 0
    for record in records:
        text = json.loads(record["instruction"])["input"]
        answer = json.loads(record["output"])
        picture = Picture(highlight_html(text, task, answer))
        assert picture.text == text
        assert not picture.listed("dk-missing"), (text, record["output"])
        shown += len(picture.labels)
    assert shown > 0


def _ee_records():
    instruction = json.dumps({"instruction": "...", "schema": [], "input": "Google acquired Nokia in 2020 and hired Ann."})
    label = [{"event_type": "acquisition", "event_trigger": "acquired",
              "arguments": [{"argument": "Google", "role": "acquirer"}, {"argument": "Nokia", "role": "target"},
                            {"argument": "2020", "role": "time"}]},
             {"event_type": "employment", "event_trigger": "hired", "arguments": [{"argument": "Ann", "role": "employee"}]}]
    output = {"acquisition": [{"trigger": "acquired", "arguments": {"acquirer": "Nokia", "target": "Nokia", "time": "2020"}}],
              "employment": [{"trigger": "joined", "arguments": {"employee": "Ann"}}]}
    return [{"id": "1", "source": "s", "instruction": instruction, "label": json.dumps(label), "output": json.dumps(output)}]


def _ner_records():
    instruction = json.dumps({"instruction": "...", "schema": [], "input": "Tom and Tom met Ann in Paris."})
    label = [{"entity": "Tom", "entity_type": "person"}, {"entity": "Ann", "entity_type": "person"},
             {"entity": "Paris", "entity_type": "location"}]
    output = {"person": ["Tom", "Tom", "Paris"], "location": ["Rome"]}
    return [{"id": "1", "source": "s", "instruction": instruction, "label": json.dumps(label), "output": json.dumps(output)}]


@pytest.mark.parametrize("task, records", [("NER", _ner_records()), ("EE", _ee_records())])
@pytest.mark.parametrize("match_mode", ["normal", "set"])
def test_diff_categories_are_evaluates_counts(task, records, match_mode):
    record = records[0]
    text = json.loads(record["instruction"])["input"]
    scored = evaluate_records(records, task, match_mode=match_mode)["total"]["per_type"]
    diff = diff_tuples(task, record["output"], record["label"], match_mode=match_mode)
    picture = Picture(diff_html(text, task, record["output"], record["label"], match_mode=match_mode))
    for prefix, groups in diff.items():
        tp = sum(counts.get(prefix + "tp", 0) for counts in scored.values())
        pred = sum(counts.get(prefix + "pred", 0) for counts in scored.values())
        gold = sum(counts.get(prefix + "gold", 0) for counts in scored.values())
        assert (len(groups["correct"]), len(groups["correct"]) + len(groups["fp"]), len(groups["correct"]) + len(groups["fn"])) \
            == (tp, pred, gold)
    for category in ("correct", "fp", "fn"):
        assert len(picture.listed(f"dk-{category}")) == sum(len(g[category]) for g in diff.values())
    assert picture.text == text


def test_diff_marks_each_category_in_the_text():
    record = _ner_records()[0]
    picture = Picture(diff_html("Tom and Tom met Ann in Paris.", "NER", record["output"], record["label"]))
    categories = {(label["data-text"], label["data-category"]) for label in picture.labels}
    assert categories == {("Tom", "correct"), ("Tom", "fp"), ("Paris", "fp"), ("Ann", "fn"), ("Paris", "fn")}
    assert picture.listed("dk-missing") == ["location (false positive): Rome"]
    assert picture.listed("dk-fn") == ["person: Ann", "location: Paris"]


def test_diff_of_an_unparsable_prediction_misses_everything():
    record = _ner_records()[0]
    diff = diff_tuples("NER", "not json", record["label"])
    assert diff[""]["correct"] == [] and diff[""]["fp"] == [] and len(diff[""]["fn"]) == 3
    assert "parse error" in diff_html("Tom", "NER", "not json", record["label"])


def test_gold_may_be_given_as_an_answer_dict():
    diff = diff_tuples("RE", {"founder": [{"subject": "Apple", "object": "Jobs"}]},
                       {"founder": [{"head": "Apple", "tail": "Jobs"}], "located in": [{"head": "Apple", "tail": "Cupertino"}]})
    assert diff[""] == {"correct": [Relation.of("Apple", "founder", "Jobs")], "fp": [],
                        "fn": [Relation.of("Apple", "located in", "Cupertino")]}


def test_save_html_writes_a_standalone_page(tmp_path):
    fragment = highlight_html("周杰出生在成都。", "NER", {"人物": ["周杰"]}, title="示例 <1>")
    path = save_html(fragment, tmp_path / "out" / "page.html", title="Extraction <demo>")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert "<title>Extraction &lt;demo&gt;</title>" in page and "<style>" in page
    assert not re.search(r'(src|href)\s*=|@import|url\(', page), "no external assets"
    assert Picture(page).highlighted() == [("周杰", "人物")]
