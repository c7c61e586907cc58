"""``evaluate --errors``: a prediction file with planted mistakes of every category, counted exactly.

Each record below is a real prediction record (converted-record layout, gold ``label``, model ``output``); the
comments say which mistake each predicted item is. The counts must equal the planted ones, in total and per type,
through the command line and from Python, and add up: per type, false-positive categories = pred - tp and
missed = gold - tp.
"""

from __future__ import annotations

import json

import pytest

from deepke_llm_core.cli import main
from deepke_llm_core.evaluate import evaluate_records
from deepke_llm_core.tasks import get_task
from deepke_llm_core.viz import plot_errors
from tests.conftest import write_lines


def record(task: str, text: str, schema: list, label: list, output: dict, n: int = 1) -> dict:
    instruction = {"instruction": "planted", "schema": schema, "input": text}
    return {"id": f"{task}-{n}", "task": task, "instruction": json.dumps(instruction, ensure_ascii=False),
            "label": json.dumps(label, ensure_ascii=False), "output": json.dumps(output, ensure_ascii=False)}


NER = record(
    "NER", "Maria Garcia visited Paris and met John Brown at Red Cross in Berlin.", ["person", "location", "organization"],
    [{"entity": "Maria Garcia", "entity_type": "person"}, {"entity": "Paris", "entity_type": "location"},
     {"entity": "John Brown", "entity_type": "person"}, {"entity": "Red Cross", "entity_type": "organization"},
     {"entity": "Berlin", "entity_type": "location"}],
    {"person": ["Maria Garcia",     # correct
                "Maria Garcia",     # duplicate: the gold has it once
                "Maria",            # boundary: inside the gold person "Maria Garcia"
                "Zorro"],           # hallucinated: not in the text
     "location": ["Paris",          # correct
                  "John Brown",     # type_confusion: a gold person
                  "Garcia visited"],  # boundary_type: overlaps the gold person "Maria Garcia", no gold location
     "organization": ["at Red Cross",  # boundary: contains the gold organization "Red Cross"
                      "Berlin",        # type_confusion: a gold location
                      "visited"]})     # spurious: in the text, overlapping no gold entity
# missed: John Brown (person), Berlin (location), Red Cross (organization)
NER_TOTAL = {"hallucinated": 1, "duplicate": 1, "type_confusion": 2, "boundary": 2, "boundary_type": 1, "spurious": 1,
             "missed": 3}
NER_PER_TYPE = {"person": {"hallucinated": 1, "duplicate": 1, "boundary": 1, "missed": 1},
                "location": {"type_confusion": 1, "boundary_type": 1, "missed": 1},
                "organization": {"boundary": 1, "type_confusion": 1, "spurious": 1, "missed": 1}}

RE = record(
    "RE", "John Brown works for Red Cross, which is located in Berlin. Maria Garcia was born in Paris.",
    ["works for", "born in", "located in", "founded by"],
    [{"head": "John Brown", "relation": "works for", "tail": "Red Cross"},
     {"head": "Red Cross", "relation": "located in", "tail": "Berlin"},
     {"head": "Maria Garcia", "relation": "born in", "tail": "Paris"}],
    {"works for": [{"subject": "John Brown", "object": "Red Cross"},   # correct
                   {"subject": "Red Cross", "object": "John Brown"},   # reversed
                   {"subject": "John", "object": "Red Cross"},         # boundary: "John" inside "John Brown"
                   {"subject": "Tom", "object": "Red Cross"},          # hallucinated
                   {"subject": "Red Cross", "object": "in Berlin"}],   # boundary_type: overlaps the located-in triple
     "born in": [{"subject": "Maria Garcia", "object": "Paris"},       # correct
                 {"subject": "Maria Garcia", "object": "Paris"}],      # duplicate
     "located in": [{"subject": "Maria Garcia", "object": "Paris"}],   # wrong_relation: the gold says born in
     "founded by": [{"subject": "Berlin", "object": "Maria Garcia"}]})  # spurious
# missed: (Red Cross, located in, Berlin)
RE_TOTAL = {"hallucinated": 1, "duplicate": 1, "wrong_relation": 1, "reversed": 1, "boundary": 1, "boundary_type": 1,
            "spurious": 1, "missed": 1}

EE = record(
    "EE", "2020年清华大学完成了对阿里巴巴的收购，协议在上海签署。",
    [{"event_type": "企业收购", "trigger": True, "arguments": ["收购方", "被收购方", "时间"]},
     {"event_type": "人物入职", "trigger": True, "arguments": ["入职者", "公司", "时间"]},
     {"event_type": "产品发布", "trigger": True, "arguments": ["发布方", "产品", "时间"]}],
    [{"event_type": "企业收购", "event_trigger": "收购", "arguments": [
        {"argument": "清华大学", "role": "收购方"}, {"argument": "阿里巴巴", "role": "被收购方"}, {"argument": "2020年", "role": "时间"}]}],
    {"企业收购": [{"trigger": "收购",                        # event: correct
               "arguments": {"收购方": "阿里巴巴",             # role_confusion: the gold 被收购方
                             "被收购方": ["清华大学",          # role_confusion: the gold 收购方
                                      "华大"],             # boundary_type: inside 清华大学, another role
                             "时间": ["2020",               # boundary: inside 2020年
                                    "协议"]}},             # spurious
              {"trigger": "收购", "arguments": {}}],          # event: duplicate
     "人物入职": [{"trigger": "收购",                        # event: type_confusion (the gold is 企业收购)
               "arguments": {"公司": "清华大学"}}],           # argument: type_confusion (another event type and role)
     "产品发布": [{"trigger": "发布", "arguments": {}}]})     # event: hallucinated trigger
# missed arguments: 清华大学 (收购方), 阿里巴巴 (被收购方), 2020年 (时间)
EE_TOTAL = {"event_hallucinated": 1, "event_duplicate": 1, "event_type_confusion": 1, "event_boundary": 0,
            "event_boundary_type": 0, "event_spurious": 0, "event_missed": 0,
            "argument_hallucinated": 0, "argument_duplicate": 0, "argument_type_confusion": 1,
            "argument_role_confusion": 2, "argument_boundary": 1, "argument_boundary_type": 1, "argument_spurious": 1,
            "argument_missed": 3}


def cli_errors(tmp_path, capsys, records, *extra) -> dict:
    path = write_lines(tmp_path / "pred.json", records)
    capsys.readouterr()
    assert main(["evaluate", "--path1", str(path), "--errors", "--out_path", str(tmp_path / "m.json"), *extra]) == 0
    return json.loads(capsys.readouterr().out)["total"]


def zero_filled(expected: dict, keys) -> dict:
    return {k: expected.get(k, 0) for k in keys}


def test_ner_errors_equal_the_planted_ones(tmp_path, capsys):
    total = cli_errors(tmp_path, capsys, [NER])
    assert total["errors"] == NER_TOTAL
    for kind, expected in NER_PER_TYPE.items():
        assert total["per_type"][kind]["errors"] == zero_filled(expected, NER_TOTAL), kind


def test_re_errors_equal_the_planted_ones(tmp_path, capsys):
    assert cli_errors(tmp_path, capsys, [RE])["errors"] == RE_TOTAL


def test_ee_errors_equal_the_planted_ones_at_both_levels(tmp_path, capsys):
    total = cli_errors(tmp_path, capsys, [EE])
    assert total["errors"] == EE_TOTAL
    acquisition = total["per_type"]["企业收购"]["errors"]
    assert acquisition["event_duplicate"] == 1 and acquisition["argument_role_confusion"] == 2
    assert acquisition["argument_missed"] == 3 and total["per_type"]["产品发布"]["errors"]["event_hallucinated"] == 1


@pytest.mark.parametrize("planted", [NER, RE, EE], ids=["NER", "RE", "EE"])
@pytest.mark.parametrize("match_mode", ["normal", "set"])
def test_categories_add_up_to_false_positives_and_negatives(planted, match_mode):
    result = evaluate_records([planted, {**planted, "id": "again"}], errors=True, match_mode=match_mode)["total"]
    for prefix in get_task(planted["task"]).score_levels([]):
        for kind, entry in result["per_type"].items():
            counts = {k[len(prefix):]: v for k, v in entry["errors"].items() if k.startswith(prefix)}
            false_positives = sum(v for k, v in counts.items() if k != "missed")
            pred, gold, tp = (entry.get(prefix + key, 0) for key in ("pred", "gold", "tp"))  # a level may lack a type
            assert false_positives == pred - tp and counts["missed"] == gold - tp, (kind, counts)


def test_set_mode_has_no_duplicates_and_python_equals_the_command_line(tmp_path, capsys):
    assert evaluate_records([NER], errors=True)["total"] == cli_errors(tmp_path, capsys, [NER])
    assert evaluate_records([NER], errors=True, match_mode="set")["total"]["errors"]["duplicate"] == 0
    assert "errors" not in evaluate_records([NER])["total"]  # unchanged without the flag


def test_errors_per_source_group(tmp_path, capsys):
    """Source b's one record is a parse failure: all five gold entities are missed there, nothing else."""
    path = write_lines(tmp_path / "pred.json", [NER | {"source": "a"}, NER | {"source": "b", "id": "2", "output": "{}"}])
    capsys.readouterr()
    assert main(["evaluate", "--path1", str(path), "--errors", "--sort_by", "source", "--out_path", str(tmp_path / "m")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["a"]["errors"] == NER_TOTAL
    assert result["b"]["errors"]["missed"] == 5 and sum(result["b"]["errors"].values()) == 5
    assert result["total"]["errors"]["missed"] == NER_TOTAL["missed"] + 5


@pytest.mark.filterwarnings("ignore:Glyph")  # the test machine's font has no CJK glyphs (EE's types)
def test_the_stacked_chart_draws_each_category_per_type():
    result = evaluate_records([NER], errors=True)
    figure = plot_errors(result)
    axis = figure.axes[0]
    labels = [container.get_label() for container in axis.containers]
    assert labels == [k for k in NER_TOTAL if NER_TOTAL[k]]  # categories that never occur are left out
    types = [tick.get_text() for tick in axis.get_xticklabels()]
    for container in axis.containers:
        heights = dict(zip(types, (bar.get_height() for bar in container)))
        for kind in types:
            assert heights[kind] == NER_PER_TYPE[kind].get(container.get_label(), 0)
    ee = plot_errors(evaluate_records([EE], errors=True), prefix="argument_")
    assert [c.get_label() for c in ee.axes[0].containers] == [k[len("argument_"):] for k, v in EE_TOTAL.items()
                                                             if k.startswith("argument_") and v]
    with pytest.raises(ValueError, match="--errors"):
        plot_errors(evaluate_records([NER]))
