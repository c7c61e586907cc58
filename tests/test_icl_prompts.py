"""ICL prompts, demonstrations and the ``deepke-llm icl`` command line (no engine is called here).

Upstream's prompts are pinned by ``tests/fixtures/upstream/icl``: cases and demonstration files we wrote, and what
upstream's ``PromptCraft`` (branch ``deepke-llm``) printed for each, recorded once (see the README there).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from deepke_llm_core.cli import main as cli_main
from deepke_llm_core.icl import build_icl_prompt, load_demos, query_text
from deepke_llm_core.icl.prompts import INSTRUCTIONS, UPSTREAM_NER_EN
from deepke_llm_core.icl.run import parse_icl_args, parse_labels
from deepke_llm_core.io import DataError
from tests.upstream_fixtures import ICL, ICL_DEMOS

ROOT = Path(__file__).resolve().parents[1]
CASES = json.loads((ICL / "cases.json").read_text(encoding="utf-8"))
UPSTREAM_PRINTED = json.loads((ICL / "outputs.json").read_text(encoding="utf-8"))
_PAIR = ("head_entity", "head_type", "tail_entity", "tail_type")


def _demos(case: dict) -> list[dict] | None:
    if not case["in_context"]:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rte_en.json has a label missing from its text, like upstream's (tested below)
        return load_demos(case["task"], case["language"], ICL_DEMOS)


def _variant(case: dict) -> str:
    """Which default instruction upstream picks for the case (custom when an instruction is given)."""
    if case["instruction"] is not None:
        return "custom"
    if case["task"] == "da":
        return "labels"
    if case["task"] in ("ner", "re") and case["domain"] and case["labels"]:
        return "domain_labels"
    if case["domain"]:
        return "domain"
    return "labels" if case["task"] in ("ner", "re") and case["labels"] else "plain"


def _upstream_prompt(case: dict) -> str:
    """What upstream printed, less ``print``'s newline; the one documented fix (SPEC.md §10) applied.

    Upstream's English NER instruction without domain and labels is the relation-extraction sentence; ours is the
    NER sentence. Everything else must be upstream's, character for character.
    """
    printed = UPSTREAM_PRINTED[case["id"]]
    assert printed.endswith("\n")
    prompt = printed[:-1]
    if (case["task"], case["language"], _variant(case)) == ("ner", "en", "plain"):
        assert prompt.startswith(UPSTREAM_NER_EN)
        prompt = INSTRUCTIONS[("ner", "en")]["plain"] + prompt[len(UPSTREAM_NER_EN):]
    return prompt


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_prompt_is_upstreams_promptcraft_prompt(case):
    ours = build_icl_prompt(case["task"], case["language"], case["text"], domain=case["domain"], labels=case["labels"],
                            examples=_demos(case), instruction=case["instruction"], **{k: case.get(k) for k in _PAIR})
    assert ours == _upstream_prompt(case)


def test_every_instruction_constant_is_exercised_by_a_recorded_case():
    covered = {(c["task"], c["language"], v) for c in CASES for v in (_variant(c), "output") if _variant(c) != "custom"}
    constants = {(task, language, variant) for (task, language), table in INSTRUCTIONS.items() for variant in table}
    assert constants <= covered, sorted(constants - covered)
    assert any(c["instruction"] is not None and c["in_context"] for c in CASES)
    assert {(c["task"], c["language"]) for c in CASES if c["in_context"]} == set(INSTRUCTIONS)
    for language, insertion in (("en", "{0} domain "), ("ch", "{0}域")):
        for task in ("ee", "rte"):
            if (task, language) != ("ee", "en"):  # upstream's English EE has "arguments. You" where domain has ".You"
                table = INSTRUCTIONS[(task, language)]
                assert table["plain"] == table["domain"].replace(insertion, ""), (task, language)
    assert INSTRUCTIONS[("re", "en")]["plain"] == UPSTREAM_NER_EN  # the generic RE sentence
    # Fixed (SPEC.md §10): the default English NER instruction is a NER sentence, not the RE one.
    assert INSTRUCTIONS[("ner", "en")]["plain"] == INSTRUCTIONS[("ner", "en")]["domain"].replace("{0} domain ", "")


def _print_prompt_argv(case: dict) -> list[str]:
    argv = ["icl", "--task", case["task"], "--language", case["language"], "--text_input", case["text"], "--print_prompt"]
    if case["domain"]:
        argv += ["--domain", case["domain"]]
    if case["labels"]:
        argv += ["--labels", ",".join(case["labels"])]
    if case["instruction"] is not None:
        argv += ["--instruction", case["instruction"]]
    if case["in_context"]:
        argv += ["--in_context", "true", "--data_path", str(ICL_DEMOS)]
    for name in _PAIR:
        if case.get(name):
            argv += [f"--{name}", case[name]]
    return argv


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_print_prompt_prints_what_upstream_prints(case, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # no engine is created, so no key is needed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli_main(_print_prompt_argv(case)) == 0
    assert capsys.readouterr().out == _upstream_prompt(case) + "\n"


def test_print_prompt_for_da_ends_with_upstreams_blank_line(capsys):
    """da's prompt ends in a newline, and upstream prints it with print(): the output ends in an empty line."""
    case = next(c for c in CASES if c["id"] == "da-en-labels")
    assert cli_main(_print_prompt_argv(case)) == 0
    out = capsys.readouterr().out
    assert out.endswith("'org:founded_by':\n\n") and out == UPSTREAM_PRINTED[case["id"]]


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
    shutil.copyfile(ICL_DEMOS / "re_ch.json", tmp_path / "re_cn.json")  # upstream main's spelling
    assert [d["relation"] for d in load_demos("re", "zh", tmp_path)] == ["导演", "创始人"]
    assert len(load_demos("ner", "ch", ICL_DEMOS)) == 2  # upstream deepke-llm's spelling


def test_a_demonstration_label_missing_from_its_text_is_a_warning_as_upstreams_rte_en_has_one():
    with pytest.warns(UserWarning) as caught:
        demos = load_demos("rte", "en", ICL_DEMOS)
    assert len(demos) == 2 and demos[1]["output"][1] == ["Amazon River", "located_in", "South America"]
    messages = [str(w.message) for w in caught]
    assert messages == [
        f"{ICL_DEMOS / 'rte_en.json'}: [1].labels[1] (head): 'Amazon River' does not occur in the demonstration's "
        "text; kept, as upstream does",
        f"{ICL_DEMOS / 'rte_en.json'}: [1].labels[1] (tail): 'South America' does not occur in the demonstration's "
        "text; kept, as upstream does",
    ]


@pytest.mark.parametrize("name, content, field", [
    ("ner_en.json", [{"text": "x"}], "(top level)"),
    ("ner_en.json", {"samples": [{"id": "1", "data": []}]}, "samples[0].text"),
    ("re_en.json", {"text": "x"}, "(top level)"),
    ("ee_en.json", [{"text": "A storm hit.", "event_list": [{"event_type": "Hit", "arguments": [{"role": "Cause"}]}]}],
     "[0].event_list[0].arguments[0].argument"),
    ("rte_en.json", [{"text": "A is B.", "labels": [["A", "is"]]}], "[0].labels[0]"),
])
def test_wrong_demonstrations_name_file_and_field(tmp_path, name, content, field):
    (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_demos(name.split("_")[0], "en", tmp_path)
    assert str(tmp_path / name) in str(info.value) and info.value.field == field


@pytest.mark.parametrize("name, content, field", [
    ("ner_en.json", {"samples": [{"text": "Tom is here.", "data": [{"E": "PER", "W": "Tim"}]}]}, "samples[0].data[0].W"),
    ("re_en.json", [{"text": "A met B.", "head_type": "p", "head_entity": "A", "tail_type": "p", "tail_entity": "C",
                     "relation": "met"}], "[0].tail_entity"),
    ("ee_en.json", [{"text": "A storm hit.", "event_list": [{"event_type": "Hit", "arguments": [
        {"role": "Cause", "argument": "wind"}]}]}], "[0].event_list[0].arguments[0].argument"),
    ("rte_en.json", [{"text": "A is B.", "labels": [["A", "is", "C"]]}], "[0].labels[0] (tail)"),
])
def test_a_mention_missing_from_its_text_warns_with_file_and_field_and_is_kept(tmp_path, name, content, field):
    (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        demos = load_demos(name.split("_")[0], "en", tmp_path)
    assert len(demos) == 1
    assert [str(w.message).split(": ")[:2] for w in caught] == [[str(tmp_path / name), field]]


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


def test_print_prompt_prints_the_user_message_and_a_newline(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # no engine is created, so no key is needed
    args = ["icl", "--task", "ner", "--language", "zh", "--text_input", "张三在北京。", "--labels", "PER,LOC",
            "--in_context", "true", "--print_prompt", "--engine", "ChatGPT"]
    assert cli_main(args) == 0
    expected = build_icl_prompt("ner", "zh", "张三在北京。", labels=["PER", "LOC"], examples=load_demos("ner", "zh"))
    assert capsys.readouterr().out == expected + "\n"  # the message, printed as upstream's print() does


def test_yaml_config_like_upstream(tmp_path, capsys):
    config = tmp_path / "icl_qwen.yaml"
    config.write_text("engine: Qwen\ntemperature: 0.3\ntask: da\nlanguage: ch\ntext_input: 创立\nlabels: 人物, 公司\n"
                      "in_context: false\ninstruction: null\nprint_prompt: true\n", encoding="utf-8")
    assert cli_main(["icl", str(config)]) == 0
    assert capsys.readouterr().out == build_icl_prompt("da", "zh", "创立", labels=["人物", "公司"]) + "\n"


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
