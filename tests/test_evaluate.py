"""The evaluator against SPEC.md's worked examples (§2.6, §2.7) and its documented fixes."""

from __future__ import annotations

import json

import pytest

from deepke_llm_core.cli import main
from deepke_llm_core.evaluate import EvalConfig, evaluate_file, evaluate_records, parse_json_output, prf
from tests.conftest import write_lines

NER_LABEL_A = json.dumps([{"entity": "Tom", "entity_type": "person"}, {"entity": "Paris", "entity_type": "location"}])
NER_LABEL_B = json.dumps([{"entity": "Ann", "entity_type": "person"}, {"entity": "Bob", "entity_type": "person"}])
INSTRUCTION = json.dumps({"instruction": "...", "schema": ["person", "location"], "input": "Tom lives in Paris. Tom"})

# The second chunk of a text asks about other schema items (a converted file never repeats a text's instruction).
INSTRUCTION_2 = json.dumps({"instruction": "...", "schema": ["organization"], "input": "Tom lives in Paris. Tom"})

NER_EXAMPLE = [
    {"id": "A", "source": "demo", "instruction": INSTRUCTION, "label": NER_LABEL_A,
     "output": '{"person": ["Tom", "Tom"], "location": ["Paris"]}'},
    {"id": "A", "source": "demo", "instruction": INSTRUCTION_2, "label": NER_LABEL_A, "output": '{"organization": ["paris"]}'},
    {"id": "B", "source": "demo", "instruction": INSTRUCTION, "label": NER_LABEL_B, "output": '{"person": ["Ann", "Bob"'},
]

RE_EXAMPLE = [
    {"id": "C", "source": "demo", "instruction": INSTRUCTION,
     "label": '[{"head":"Apple","relation":"founder","tail":"Jobs"},{"head":"Apple","relation":"located in","tail":"Cupertino"}]',
     "output": '{"founder": [{"head": "Apple", "tail": "Jobs"}], "located in": [{"head": "Jobs", "tail": "Cupertino"}]}'},
    {"id": "D", "source": "demo2", "instruction": INSTRUCTION,
     "label": '[{"head":"Microsoft","relation":"founder","tail":"Gates"}]',
     "output": '{"founder": [{"subject": "Microsoft", "object": "Gates"}], "located in": []}'},
]


def numbered(records):
    return list(enumerate(records, start=1))


def core(result):
    return {k: v for k, v in result.items() if k != "per_type"}


def test_ner_worked_example_normal_and_set_mode():
    result = evaluate_records(numbered(NER_EXAMPLE), "NER")
    assert core(result["total"]) == {"总样本数": 2, "错误数": 1, "P": 50.0, "R": 50.0, "F1": 50.0}
    result = evaluate_records(numbered(NER_EXAMPLE), "NER", match_mode="set")
    assert core(result["total"]) == {"总样本数": 2, "错误数": 1, "P": 66.67, "R": 50.0, "F1": 57.14}


def test_re_worked_example_reproduces_upstream_with_head_tail_keys():
    result = evaluate_records(numbered(RE_EXAMPLE), "RE", sort_by="source", rel_keys="head_tail")
    assert {k: core(v) for k, v in result.items()} == {
        "total": {"总样本数": 2, "错误数": 0, "P": 33.33, "R": 33.33, "F1": 33.33},
        "demo": {"总样本数": 1, "错误数": 0, "P": 50.0, "R": 50.0, "F1": 50.0},
        "demo2": {"总样本数": 1, "错误数": 0, "P": 0.0, "R": 0.0, "F1": 0.0},
    }


def test_re_reads_subject_object_by_default():
    result = evaluate_records(numbered(RE_EXAMPLE), "RE", sort_by="source")
    assert core(result["total"]) == {"总样本数": 2, "错误数": 0, "P": 66.67, "R": 66.67, "F1": 66.67}
    assert core(result["demo2"])["F1"] == 100.0
    per_type = result["total"]["per_type"]
    assert per_type["founder"] == {"P": 100.0, "R": 100.0, "F1": 100.0, "tp": 2, "pred": 2, "gold": 2}
    assert per_type["located in"]["tp"] == 0 and per_type["located in"]["gold"] == 1


def test_f1_is_computed_from_unrounded_precision_and_recall():
    # tp=1, pred=1, gold=6: P=100, R=16.67; from the rounded values upstream gets 28.58, the exact F1 is 28.57.
    assert prf(1, 1, 6) == {"P": 100.0, "R": 16.67, "F1": 28.57}
    assert prf(0, 0, 5) == {"P": 0.0, "R": 0.0, "F1": 0.0}


def record(task, label, output, id_="x", source="s"):
    return {"id": id_, "task": task, "source": source, "instruction": INSTRUCTION, "label": json.dumps(label, ensure_ascii=False), "output": output}


def test_ee_scores_event_and_argument_levels():
    label = [{"event_type": "裁员", "event_trigger": "裁员", "arguments": [{"argument": "900人", "role": "人数"}, {"argument": "5月", "role": "时间"}]}]
    output = json.dumps({"裁员": [{"trigger": "裁员", "arguments": {"人数": "900人", "时间": "NAN", "裁员方": ["甲", "NAN"]}}]}, ensure_ascii=False)
    result = evaluate_records(numbered([record("EE", label, output)]))
    total = result["total"]
    assert (total["event_P"], total["event_R"]) == (100.0, 100.0)
    assert (total["argument_P"], total["argument_R"]) == (50.0, 50.0)
    assert total["per_type"]["裁员"]["argument_tp"] == 1


def test_eea_accepts_wrapped_and_flat_outputs_and_scores_triggers():
    label = [{"event_type": "裁员", "event_trigger": "裁员", "arguments": [{"argument": "900人", "role": "人数"}]}]
    wrapped = json.dumps({"裁员": [{"trigger": "裁员", "arguments": {"人数": "900人"}}]}, ensure_ascii=False)
    flat = json.dumps({"裁员": [{"人数": "900人"}]}, ensure_ascii=False)
    total = evaluate_records(numbered([record("EEA", label, wrapped)]))["total"]
    assert total["event_F1"] == 100.0 and total["argument_F1"] == 100.0
    total = evaluate_records(numbered([record("EEA", label, flat)]))["total"]
    assert total["argument_F1"] == 100.0 and total["event_F1"] == 0.0


@pytest.mark.parametrize("task,label,output", [
    ("EET", [{"event_type": "裁员", "event_trigger": "裁员", "arguments": []}], '{"裁员": ["裁员"]}'),
    ("SPO", [{"head": "A", "head_type": "人物", "relation": "作者", "tail": "B", "tail_type": "人物"}], '{"作者": [{"subject": "A", "object": "B"}]}'),
    ("KG", [{"head": "明治天皇", "relation": "父母", "tail": "孝明天皇"}, {"head": "明治天皇", "relation": "别名", "tail": "睦仁"}],
     '{"人物": {"明治天皇": {"父母": ["孝明天皇"], "别名": "睦仁", "职业": "无", "死亡日期": "NaN"}}}'),
])
def test_tasks_upstream_could_not_score_now_score_perfect_predictions(task, label, output):
    total = evaluate_records(numbered([record(task, label, output)]))["total"]
    assert (total["P"], total["R"], total["F1"], total["错误数"]) == (100.0, 100.0, 100.0, 0)


def test_malformed_inner_structures_are_skipped_not_raised():
    label = [{"event_type": "裁员", "event_trigger": "裁员", "arguments": []}]
    output = json.dumps({"裁员": [{"trigger": "裁员", "arguments": ["not", "a", "dict"]}, 5, {"trigger": 3}], "x": "y"}, ensure_ascii=False)
    total = evaluate_records(numbered([record("EE", label, output), record("EE", label, "[1, 2]", id_="y")]))["total"]
    assert total["错误数"] == 1 and total["event_R"] == 0.0


def test_lenient_mode_recovers_fenced_and_wrapped_json_but_strict_counts_errors():
    label = [{"entity": "Tom", "entity_type": "person"}]
    outputs = ['```json\n{"person": ["Tom"]}\n```', 'Sure! Here it is: {"person": ["Tom"]} Hope this helps.', "{'person': ['Tom'],}"]
    records = [record("NER", label, o, id_=str(i)) for i, o in enumerate(outputs)]
    strict = evaluate_records(numbered(records))["total"]
    assert strict["错误数"] == 3 and strict["F1"] == 0.0
    lenient = evaluate_records(numbered(records), lenient=True)["total"]
    assert lenient["错误数"] == 0 and lenient["F1"] == 100.0


def test_parse_json_output_rejects_non_objects():
    assert parse_json_output("[1]") is None
    assert parse_json_output("nonsense", lenient=True) is None
    assert parse_json_output('{"a": []}') == {"a": []}


def test_cli_writes_upstream_output_path_and_reports_missing_output(tmp_path, capsys):
    path = write_lines(tmp_path / "pred" / "ner.json", NER_EXAMPLE)
    assert main(["evaluate", "--path1", str(path), "--task", "NER"]) == 0
    written = json.loads((tmp_path / "pred" / "output_msg" / "ner.json").read_text(encoding="utf-8"))
    assert written["total"]["F1"] == 50.0
    assert json.loads(capsys.readouterr().out)["total"]["错误数"] == 1

    bad = write_lines(tmp_path / "bad.json", [{k: v for k, v in NER_EXAMPLE[0].items() if k != "output"}])
    assert main(["evaluate", "--path1", str(bad), "--task", "NER"]) == 2
    err = capsys.readouterr().err
    assert "bad.json:1: output: missing" in err


def test_task_is_taken_from_records_when_not_given(tmp_path):
    path = write_lines(tmp_path / "p.json", [record("NER", [{"entity": "Tom", "entity_type": "person"}], '{"person": ["Tom"]}')])
    result, out = evaluate_file(EvalConfig(path1=str(path), out_path=str(tmp_path / "m.json")))
    assert result["total"]["F1"] == 100.0 and (tmp_path / "m.json").exists()


# ---- issue 17: set mode de-duplicates each level on its own, as upstream's EEMetric does ---------------------------

def test_set_mode_dedupes_event_and_argument_levels_separately():
    # Two predicted events share type and trigger but not arguments; two other events share an argument.
    # Upstream (EEMetric.count_instance_evt/arg) applies set() to the (type, trigger) list and to the
    # (type, argument, role) list separately: event pred 2 -> {(裁员, 裁员), (裁员, 解雇)} and argument pred 3 -> 2.
    # De-duplicating whole events first kept 3 event items and 3 argument items.
    label = [{"event_type": "裁员", "event_trigger": "裁员", "arguments": [{"argument": "900人", "role": "人数"}]}]
    output = json.dumps({"裁员": [{"trigger": "裁员", "arguments": {"人数": "900人"}},
                                  {"trigger": "裁员", "arguments": {"时间": "5月"}},
                                  {"trigger": "解雇", "arguments": {"人数": "900人"}}]}, ensure_ascii=False)
    total = evaluate_records(numbered([record("EE", label, output)]), match_mode="set")["total"]
    assert (total["event_P"], total["event_R"]) == (50.0, 100.0)
    assert (total["argument_P"], total["argument_R"]) == (50.0, 100.0)
    assert total["per_type"]["裁员"]["event_pred"] == 2 and total["per_type"]["裁员"]["argument_pred"] == 2
    normal = evaluate_records(numbered([record("EE", label, output)]))["total"]
    assert (normal["event_P"], normal["argument_P"]) == (33.33, 33.33)


# ---- issue 11: a mix of tasks, duplicate texts, hostile outputs, paths ----------------------------------------------

def test_a_mix_of_tasks_is_refused_with_both_lines_named(tmp_path, capsys):
    ner = record("NER", [{"entity": "Tom", "entity_type": "person"}], '{"person": ["Tom"]}', id_="n")
    rel = record("RE", [{"head": "Tom", "relation": "lives in", "tail": "Paris"}],
                 '{"lives in": [{"subject": "Tom", "object": "Paris"}]}', id_="r")
    path = write_lines(tmp_path / "mixed.json", [ner, ner | {"id": "n2"}, rel])
    assert main(["evaluate", "--path1", str(path)]) == 2
    err = capsys.readouterr().err
    assert "mixed.json:3: task: 'RE'" in err and "line 1" in err and "--task" in err and "Traceback" not in err
    # --task that contradicts the records' own task field is refused the same way
    assert main(["evaluate", "--path1", str(path), "--task", "RE"]) == 2
    assert "mixed.json:1: task: 'NER'" in capsys.readouterr().err
    assert not (tmp_path / "output_msg").exists()


def test_identical_texts_are_separate_instances():
    # Three records of one text (same id): each a complete, perfect prediction. Upstream merges them into one
    # instance (gold once, predictions thrice: F1 50); a chunk whose instruction repeats starts a new instance.
    label = [{"entity": "Tom", "entity_type": "person"}, {"entity": "Paris", "entity_type": "location"}]
    same = record("NER", label, '{"person": ["Tom"], "location": ["Paris"]}', id_="dup")
    total = evaluate_records(numbered([same, same, same]))["total"]
    assert (total["总样本数"], total["P"], total["R"], total["F1"]) == (3, 100.0, 100.0, 100.0)


def test_identical_texts_split_into_chunks_stay_separate_and_whole():
    label = [{"entity": "Tom", "entity_type": "person"}, {"entity": "Paris", "entity_type": "location"}]
    first = record("NER", label, '{"person": ["Tom"], "location": ["Paris"]}', id_="dup")
    second = {**first, "instruction": INSTRUCTION_2, "output": '{"organization": []}'}
    total = evaluate_records(numbered([first, second, first, second]))["total"]
    assert (total["总样本数"], total["F1"]) == (2, 100.0)


@pytest.mark.parametrize("output,errors,lenient_errors", [
    ("[" * 1000 + "]" * 1000, 1, 1),                                   # 1,000 deep: upstream's RecursionError
    ('{"person": ["Tom", ' + "1" * 5000 + "]}", 1, 0),                  # upstream's ValueError (int digits limit);
                                                                        # json-repair reads the number as a string
    ("1" * 5000, 1, 1),
    ('{"person": ["Tom"], "x": ' + "[" * 5000 + "]" * 5000 + "}", 1, 1),  # deeper than any parser's limit
    ('{"person": ["Tom"]' + "]" * 3000, 1, 0),                          # lenient mode mends the brackets
])
@pytest.mark.parametrize("lenient", [False, True])
def test_hostile_outputs_count_as_parse_errors_and_never_abort(output, errors, lenient_errors, lenient):
    label = [{"entity": "Tom", "entity_type": "person"}]
    records = [record("NER", label, output, id_="bad"), record("NER", label, '{"person": ["Tom"]}', id_="good")]
    total = evaluate_records(numbered(records), lenient=lenient)["total"]
    assert total["总样本数"] == 2 and total["错误数"] == (lenient_errors if lenient else errors)
    assert total["P"] == 100.0 or lenient


def test_out_path_equal_to_the_predictions_is_refused(tmp_path, capsys, monkeypatch):
    path = write_lines(tmp_path / "pred.json", NER_EXAMPLE)
    before = path.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in (str(path), "pred.json", "./pred.json", str(tmp_path / "sub" / ".." / "pred.json")):
        assert main(["evaluate", "--path1", "pred.json", "--task", "NER", "--out_path", out]) == 2
        err = capsys.readouterr().err
        assert "--out_path" in err and "--path1" in err and "Traceback" not in err
    (tmp_path / "link.json").symlink_to(path)
    assert main(["evaluate", "--path1", "pred.json", "--task", "NER", "--out_path", "link.json"]) == 2
    assert path.read_bytes() == before


def test_a_directory_for_either_path_is_a_located_error(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["evaluate", "--path1", str(folder), "--task", "NER"]) == 2
    err = capsys.readouterr().err
    assert f"{folder}: --path1 is a directory" in err and "Traceback" not in err
    path = write_lines(tmp_path / "pred.json", NER_EXAMPLE)
    assert main(["evaluate", "--path1", str(path), "--task", "NER", "--out_path", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder}: --out_path is a directory" in err and "Traceback" not in err


# ---- streaming: groups scored as they end; scattered records of one text still scored together ---------------------

def _chunked_predictions(n_texts: int = 40) -> list[dict]:
    """Texts in two chunks each (one per schema half), with outputs right, wrong, duplicated or broken."""
    import random

    rng = random.Random(7)
    records = []
    for i in range(n_texts):
        text = f"text {i}"
        label = [{"entity": f"e{i}", "entity_type": "person"}, {"entity": f"p{i}", "entity_type": "location"},
                 {"entity": f"o{i}", "entity_type": "organization"}]
        for schema, output in ((["person", "location"], {"person": [f"e{i}"] * rng.randint(1, 2), "location": [f"p{i}", "x"]}),
                               (["organization"], {"organization": [f"o{i}" if rng.random() < 0.5 else "o"]})):
            instruction = json.dumps({"instruction": "...", "schema": schema, "input": text})
            out = json.dumps(output) if rng.random() < 0.9 else "{broken"
            records.append({"id": f"id{i}", "source": f"s{i % 3}", "task": "NER", "instruction": instruction,
                            "label": json.dumps(label), "output": out})
    return records


@pytest.mark.parametrize("match_mode", ["normal", "set"])
def test_scattered_chunks_score_as_if_adjacent(tmp_path, match_mode):
    import random

    records = _chunked_predictions()
    grouped = evaluate_records(records, sort_by="source", match_mode=match_mode)
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    assert evaluate_records(shuffled, sort_by="source", match_mode=match_mode) == grouped
    for name, recs in (("grouped.json", records), ("shuffled.json", shuffled)):
        path = write_lines(tmp_path / name, recs)
        result, _ = evaluate_file(EvalConfig(path1=str(path), sort_by="source", match_mode=match_mode))
        assert result == grouped
    # and each chunk scored alone would differ: the instance, not the chunk, is the unit (duplicates across chunks)
    assert grouped["total"]["总样本数"] == 40


def test_file_and_records_agree_and_a_generator_is_accepted(tmp_path):
    records = _chunked_predictions(10)
    path = write_lines(tmp_path / "p.json", records[::-1])
    from deepke_llm_core.io import iter_jsonl

    assert evaluate_records(iter_jsonl(path)) == evaluate_records(records) == evaluate_file(EvalConfig(path1=str(path)))[0]


def test_odd_instruction_and_task_fields_are_located_not_raised(tmp_path, capsys):
    label = [{"entity": "Tom", "entity_type": "person"}]
    odd = [record("NER", label, '{"person": ["Tom"]}', id_="a") | {"instruction": {"not": "a string"}},
           record("NER", label, '{"person": ["Tom"]}', id_="a") | {"instruction": None}]
    assert evaluate_records(numbered(odd))["total"]["总样本数"] == 1  # no instruction to tell a duplicate by
    path = write_lines(tmp_path / "p.json", [record("XYZ", label, "{}")])
    assert main(["evaluate", "--path1", str(path)]) == 2
    assert "p.json:1: task: unknown task 'XYZ'" in capsys.readouterr().err
