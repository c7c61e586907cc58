"""ICL prompts, demonstrations and the ``deepke-llm icl`` command line (no engine is called here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deepke_llm_core.cli import main as cli_main
from deepke_llm_core.icl import build_icl_prompt, load_demos, query_text
from deepke_llm_core.icl.prompts import INSTRUCTIONS, UPSTREAM_NER_EN
from deepke_llm_core.icl.run import parse_icl_args, parse_labels
from deepke_llm_core.io import DataError

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "SPEC.md"
UPSTREAM_V2 = ROOT.parent / "shared" / "reference" / "icl_examples_v2"
TASK_NAMES = {"NER": "ner", "RE": "re", "EE": "ee", "RTE": "rte", "DA": "da"}
VARIANTS = {"domain+labels": "domain_labels", "domain only": "domain", "labels only": "labels", "domain": "domain",
            "always appended": "output", "(labels required)": "labels", "": "labels", "no domain": "plain", "neither": "plain"}


def spec_literals() -> dict[tuple[str, str, str], str]:
    """``(task, language, variant) -> string`` from the bullets of SPEC.md §6.2, backslash escapes decoded."""
    if not SPEC.is_file():
        pytest.skip("../shared/SPEC.md is not beside this checkout")
    section = SPEC.read_text(encoding="utf-8").split("### 6.2", 1)[1].split("**QUERY**", 1)[0]
    english, chinese = section.split("Chinese (`ch`):", 1)
    found = {}
    for language, part in (("en", english), ("ch", chinese)):
        for name, variant, literal in re.findall(r"^\* (NER|RE|EE|RTE|DA)(?:, | )?([^:`]*): `(.+)`$", part, re.M):
            found[(TASK_NAMES[name], language, VARIANTS[variant.strip()])] = literal.replace("\\n", "\n")
    return found


def test_every_instruction_constant_is_the_spec_literal():
    literals = spec_literals()
    assert len(literals) >= 28
    for (task, language, variant), literal in literals.items():
        assert INSTRUCTIONS[(task, language)][variant] == literal, (task, language, variant)
    for language, insertion in (("en", "{0} domain "), ("ch", "{0}域")):
        for task in ("ee", "rte"):
            table = INSTRUCTIONS[(task, language)]
            if (task, language, "plain") in literals:
                continue  # English EE has its own literal (with a space the domain variant lacks)
            assert table["plain"] == table["domain"].replace(insertion, ""), (task, language)
    assert INSTRUCTIONS[("re", "en")]["plain"] == UPSTREAM_NER_EN  # the generic RE sentence, as the SPEC says
    # Fixed (SPEC.md §10): the default English NER instruction is a NER sentence, not the RE one.
    assert INSTRUCTIONS[("ner", "en")]["plain"] == INSTRUCTIONS[("ner", "en")]["domain"].replace("{0} domain ", "")


@pytest.mark.parametrize("task, language, spec_row", [
    ("ner", "en", "Input: {text}\nOutput: "), ("rte", "zh", "输入：{text}\n输出："),
    ("re", "en", "Context: {text}\nThe relation between ({head_type}) '{head_entity}' and ({tail_type}) '{tail_entity}' in the context is: "),
    ("re", "ch", "上下文：{text}\n上下文中头实体（{head_type}）‘{head_entity}’和尾实体（{tail_type}）‘{tail_entity}’之间的关系类型是："),
    ("da", "en", "Generate more samples for the relation '{text}':\n"), ("da", "zh", "请为关系‘{text}’生成更多的样例数据：\n"),
])
def test_query_rows(task, language, spec_row):
    names = {k: "{" + k + "}" for k in ("head_entity", "head_type", "tail_entity", "tail_type")}
    assert query_text(task, language, "{text}", **names) == spec_row


def test_spec_worked_example_re_en_zero_shot():
    prompt = build_icl_prompt("re", "en", "Bob is the father of Tom.", domain="news", head_entity="Bob",
                              head_type="person", tail_entity="Tom", tail_type="person")
    assert prompt == ("You are a highly intelligent and accurate news domain relation extraction(RE) system. Given a "
                      "context, a pair of head and tail entities in the context, your task is to extract the specific "
                      "type of news domain relationship between the head and tail entities.\nYour output is only the "
                      "relation type, no other words.\n\nContext: Bob is the father of Tom.\nThe relation between "
                      "(person) 'Bob' and (person) 'Tom' in the context is: ")


def test_in_context_layouts():
    ee = build_icl_prompt("ee", "ch", "纳达尔夺冠。", examples=load_demos("ee", "zh"))
    instruction = INSTRUCTIONS[("ee", "ch")]["plain"] + INSTRUCTIONS[("ee", "ch")]["output"]
    first = json.loads((ROOT / "data" / "icl" / "ee_zh.json").read_text(encoding="utf-8"))[0]
    assert ee == (instruction + "示例: \n输入: " + first["text"] + "\n输出: " + str(first["event_list"]) + "\n"
                  + "输入：纳达尔夺冠。\n输出：")
    re_en = build_icl_prompt("re", "en", "T", head_entity="a", head_type="b", tail_entity="c", tail_type="d",
                             labels=["x", "y"], examples=[{"context": "C", "head_type": "ht", "head_entity": "he",
                                                           "tail_type": "tt", "tail_entity": "te", "relation": "r"}])
    assert "from candidate relations:\nx, y\n" in re_en
    assert "Examples: \nContext: COutput: The relation between (ht) 'he' and (tt) 'te' in the context is: r\nContext: T\n" in re_en
    re_ch = build_icl_prompt("re", "ch", "T", head_entity="a", head_type="b", tail_entity="c", tail_type="d",
                             labels=["甲", "乙"], examples=load_demos("re", "zh")[:1])
    assert "候选的关系类型如下：\n甲，乙\n" in re_ch and "间的关系类型是： 导演\n上下文：T\n" in re_ch
    da = build_icl_prompt("da", "en", "founded_by", labels=["person", "organization"], examples=load_demos("da", "en")[:1])
    assert "Here are some samples for relation 'founded_by': \nRelation: founded_by\nContext: " in da
    assert da.endswith("\nTail Type: person\nGenerate more samples for the relation 'founded_by':\n")
    custom = build_icl_prompt("ner", "en", "Tom.", instruction="Find people.")
    assert custom == "Find people.\nInput: Tom.\nOutput: "


@pytest.mark.parametrize("task", ["ner", "re", "ee", "rte", "da"])
@pytest.mark.parametrize("language", ["en", "zh", "ch"])
def test_bundled_demonstrations_load(task, language):
    demos = load_demos(task, language)
    assert demos and build_icl_prompt(task, language, "x", labels=["a"], head_entity="h", head_type="t",
                                      tail_entity="e", tail_type="u", examples=demos)


def test_upstream_layout_and_cn_spelling(tmp_path):
    if not UPSTREAM_V2.is_dir():
        pytest.skip("../shared/reference is not beside this checkout")
    (tmp_path / "re_cn.json").write_bytes((UPSTREAM_V2 / "re_ch.json").read_bytes())
    assert [d["relation"] for d in load_demos("re", "zh", tmp_path)] == ["导演", "导演"]
    assert len(load_demos("ner", "ch", UPSTREAM_V2)) == 2


@pytest.mark.parametrize("name, content, field", [
    ("ner_en.json", [{"text": "x"}], "(top level)"),
    ("ner_en.json", {"samples": [{"id": "1", "data": []}]}, "samples[0].text"),
    ("ner_en.json", {"samples": [{"text": "Tom is here.", "data": [{"E": "PER", "W": "Tim"}]}]}, "samples[0].data[0].W"),
    ("re_en.json", {"text": "x"}, "(top level)"),
    ("re_en.json", [{"text": "A met B.", "head_type": "p", "head_entity": "A", "tail_type": "p", "tail_entity": "C",
                     "relation": "met"}], "[0].tail_entity"),
    ("ee_en.json", [{"text": "A storm hit.", "event_list": [{"event_type": "Hit", "arguments": [{"role": "Cause"}]}]}],
     "[0].event_list[0].arguments[0].argument"),
    ("rte_en.json", [{"text": "A is B.", "labels": [["A", "is"]]}], "[0].labels[0]"),
])
def test_wrong_demonstrations_name_file_and_field(tmp_path, name, content, field):
    (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_demos(name.split("_")[0], "en", tmp_path)
    assert str(tmp_path / name) in str(info.value) and info.value.field == field


def test_missing_demonstrations_file_lists_what_was_tried(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ner_zh\.json.*ner_ch\.json.*ner_cn\.json"):
        load_demos("ner", "zh", tmp_path)


def test_in_context_flag_parses_false():
    for text, value in (("false", False), ("False", False), ("0", False), ("no", False), ("true", True), ("1", True)):
        assert parse_icl_args(["--in_context", text]).in_context is value
    assert parse_icl_args(["--in_context"]).in_context is True
    assert parse_icl_args([]).in_context is False
    assert parse_icl_args(["--in_context", "TRUE"]).in_context is True
    assert parse_labels("人物， 公司,PER") == ["人物", "公司", "PER"] == parse_labels('["人物", "公司", "PER"]')


def test_print_prompt_prints_exactly_the_user_message(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # no engine is created, so no key is needed
    args = ["icl", "--task", "ner", "--language", "zh", "--text_input", "张三在北京。", "--labels", "PER,LOC",
            "--in_context", "true", "--print_prompt", "--engine", "ChatGPT"]
    assert cli_main(args) == 0
    expected = build_icl_prompt("ner", "zh", "张三在北京。", labels=["PER", "LOC"], examples=load_demos("ner", "zh"))
    assert capsys.readouterr().out == expected


def test_yaml_config_like_upstream(tmp_path, capsys):
    config = tmp_path / "icl_qwen.yaml"
    config.write_text("engine: Qwen\ntemperature: 0.3\ntask: da\nlanguage: ch\ntext_input: 创立\nlabels: 人物, 公司\n"
                      "in_context: false\ninstruction: null\nprint_prompt: true\n", encoding="utf-8")
    assert cli_main(["icl", str(config)]) == 0
    assert capsys.readouterr().out == build_icl_prompt("da", "zh", "创立", labels=["人物", "公司"])


@pytest.mark.parametrize("argv, message", [
    (["--task", "xyz", "--text_input", "t", "--engine", "ChatGPT"], "unknown ICL task 'xyz'; valid tasks: ner, re, ee, rte, da"),
    (["--task", "ner", "--text_input", "t", "--engine", "GPT5"],
     "unknown engine 'GPT5'; valid engines: transformers, vllm, ChatGPT, DeepSeek, Qwen, LLaMA, MiniCPM, ChatGLM, hf, openai"),
    (["--task", "ner", "--text_input", "t"], "--engine is required; valid engines: transformers"),
    (["--task", "re", "--text_input", "t", "--engine", "ChatGPT", "--head_entity", "a"],
     "task re needs --head_type, --tail_entity, --tail_type"),
    (["--task", "da", "--text_input", "founded_by", "--engine", "ChatGPT"], "task da needs --labels"),
    (["--task", "ner", "--engine", "ChatGPT"], "--text_input is required"),
    (["--text_input", "t", "--engine", "ChatGPT"], "--task is required; valid tasks: ner, re, ee, rte, da"),
    (["--task", "ner", "--text_input", "t", "--engine", "Qwen"], "engine Qwen needs --model_id"),
    (["--input_file", "x.json", "--engine", "ChatGPT"], "--input_file needs --output_file"),
])
def test_bad_arguments_are_one_line_errors(capsys, monkeypatch, argv, message):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # never the default endpoint
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused")
    assert cli_main(["icl", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepke-llm icl: error: ") and message in err and "Traceback" not in err


def test_language_choices_are_enforced(capsys):
    with pytest.raises(SystemExit):
        parse_icl_args(["--language", "fr"])
    assert "invalid choice: 'fr'" in capsys.readouterr().err


def test_bad_batch_input_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "test.json"
    bad.write_text('{"instruction": "x"}\n{"id": 2}\n', encoding="utf-8")
    assert cli_main(["icl", "--engine", "ChatGPT", "--input_file", str(bad), "--output_file", str(tmp_path / "o.json")]) == 2
    assert f"{bad}:2: instruction: missing" in capsys.readouterr().err
