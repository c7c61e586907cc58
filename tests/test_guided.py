"""Guided decoding: schema-guided (``--guided``/``--guided schema``) and span-constrained (``--guided spans``).

The grammars are checked with xgrammar's own matcher over the real tiny tokenizer: the substring rule accepts every
substring of a text (quotes, backslashes, control characters, CJK and astral characters included) and nothing
else; every task's reference answers, rendered by the converter from the committed samples, are accepted in both
modes exactly when their strings are in the text. Then the committed tiny IE base generates on held-out records:
unguided it invents strings, with ``--guided spans`` it cannot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepke_llm_core.cli import main
from deepke_llm_core.convert import ConvertConfig, convert_file
from deepke_llm_core.errors import hallucinated_mentions
from deepke_llm_core.evaluate import instruction_input
from deepke_llm_core.predict.guided import GuidedDecoding, guided_mode, output_schema_of
from deepke_llm_core.predict.run import InferArguments, parse_infer_args
from deepke_llm_core.predict.spans import SPAN, span_grammar
from deepke_llm_core.tasks import TASKS, get_task
from deepke_llm_core.tiny_base import tiny_base_path
from tests.conftest import read_lines, write_lines

xgr = pytest.importorskip("xgrammar")
DATA = Path(__file__).resolve().parents[1] / "data"
STOP = 2  # the tiny base's <|im_end|>


@pytest.fixture(scope="module")
def guide() -> GuidedDecoding:
    from transformers import AutoTokenizer

    from transformers import AutoConfig

    vocab_size = AutoConfig.from_pretrained(str(tiny_base_path())).vocab_size
    return GuidedDecoding(AutoTokenizer.from_pretrained(str(tiny_base_path())), [STOP], vocab_size)


def accepts(compiled, answer: str) -> bool:
    """Whether the grammar takes ``answer`` whole and then lets generation stop."""
    matcher = xgr.GrammarMatcher(compiled)
    return matcher.accept_string(answer) and matcher.accept_token(STOP) and matcher.is_terminated()


TEXT = 'Tom said "a\\b"\n\t東京😀'


def test_the_substring_rule_takes_exactly_the_substrings_of_the_text(guide):
    compiled = guide.compiler.compile_grammar(span_grammar({"type": "array", "items": SPAN}, TEXT))
    substrings = {TEXT[i:j] for i in range(len(TEXT)) for j in range(i + 1, len(TEXT) + 1)}
    for value in substrings:
        assert accepts(compiled, json.dumps([value], ensure_ascii=False)), value
    assert accepts(compiled, json.dumps(["Tom", "東京😀", "\n"], ensure_ascii=False))
    assert accepts(compiled, "[]")
    alphabet = sorted(set(TEXT))
    others = {a + b for a in alphabet for b in alphabet} - substrings
    assert len(others) > 100
    for value in others:
        assert not accepts(compiled, json.dumps([value], ensure_ascii=False)), value
    for bad in ('[""]', '["Tom said \\"a\\\\b\\"!"]', '["tom"]', '["\\u6771"]', '["Tom",]', '["Tom"] '):
        assert not accepts(compiled, bad), bad


def test_an_empty_text_allows_only_empty_answers(guide):
    compiled = guide.compiler.compile_grammar(span_grammar({"type": "array", "items": SPAN}, ""))
    assert accepts(compiled, "[]") and not accepts(compiled, '["a"]') and not accepts(compiled, '[""]')


def _training_records(tmp_path, task: str, language: str) -> list[dict]:
    out = tmp_path / f"{task}-{language}.json"
    convert_file(ConvertConfig(src_path=str(DATA / language / task / "sample.json"), tgt_path=str(out), task=task,
                               schema_path=str(DATA / language / task / "schema.json"), language=language,
                               split="train", split_num=4, progress=False))
    return read_lines(out)


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("name", list(TASKS))
def test_reference_answers_pass_both_grammars_exactly_when_their_strings_are_in_the_text(guide, tmp_path, name, language):
    task = get_task(name)
    grounded = 0
    for record in _training_records(tmp_path, name, language):
        text, answer = instruction_input(record), record["output"]
        in_text = not hallucinated_mentions(task.parse_answer(answer), text)
        assert accepts(guide.compile(output_schema_of(record, "schema")), answer), answer
        spans = guide.compile(output_schema_of(record, "spans"))
        assert accepts(spans, answer) == in_text, answer
        grounded += in_text
        strings = [m.text for e in task.parse_answer(answer) for m in e.mentions() if m.text]
        if in_text and strings:  # the same answer with one string changed into one not in the text
            invented = answer.replace(json.dumps(strings[0], ensure_ascii=False), '"Zorglub"', 1)
            assert invented != answer
            assert accepts(guide.compile(output_schema_of(record, "schema")), invented)
            assert not accepts(spans, invented), invented
    assert grounded > 0


def test_eea_test_items_are_answered_without_a_trigger(guide, tmp_path):
    """EEA test instructions give no trigger, and the converter renders their answers without one."""
    out = tmp_path / "eea.json"
    convert_file(ConvertConfig(src_path=str(DATA / "en" / "EEA" / "sample.json"), tgt_path=str(out), task="EEA",
                               schema_path=str(DATA / "en" / "EEA" / "schema.json"), language="en", split="test",
                               progress=False))
    record = read_lines(out)[0]
    entries, text = json.loads(record["instruction"])["schema"], instruction_input(record)
    assert all("trigger" not in e for e in entries)
    role = entries[0]["arguments"][0]
    answer = {e["event_type"]: [] for e in entries}
    answer[entries[0]["event_type"]] = [{"arguments": {role: text.split()[0]}}]
    for mode in ("schema", "spans"):
        assert accepts(guide.compile(output_schema_of(record, mode)), json.dumps(answer, ensure_ascii=False)), mode


def test_the_guided_flag_alone_still_means_schema(tmp_path):
    required = ["--model_name_or_path", "m", "--input_file", "i", "--output_file", "o"]
    assert parse_infer_args(required + ["--guided"]).guided == "schema"
    assert parse_infer_args(required + ["--guided", "--batch_size", "2"]).guided == "schema"
    assert parse_infer_args(required + ["--guided", "spans"]).guided == "spans"
    assert parse_infer_args(required + ["--guided", "false"]).guided is None
    assert parse_infer_args(required).guided is None
    assert InferArguments("m", "i", "o", guided=True).guided == "schema"
    assert [guided_mode(v) for v in ("TRUE", "none", "Spans")] == ["schema", None, "spans"]


def test_a_wrong_mode_or_spans_over_an_endpoint_is_refused(tmp_path, capsys):
    write_lines(tmp_path / "in.json", [])
    args = ["infer", "--model_name_or_path", "m", "--input_file", str(tmp_path / "in.json"),
            "--output_file", str(tmp_path / "out.json")]
    assert main(args + ["--guided", "words"]) == 2
    assert "--guided must be schema or spans" in capsys.readouterr().err
    assert main(args + ["--guided", "spans", "--engine", "openai", "--base_url", "http://127.0.0.1:9/v1"]) == 2
    assert "--guided spans needs a local engine" in capsys.readouterr().err


def _held_out(tmp_path, names, per_file):
    records = []
    for name in names:
        records += read_lines(tiny_base_path() / "held_out" / f"{name}.json")[:per_file]
    return write_lines(tmp_path / "held_out.json", records)


def _measure(path) -> tuple[int, int, int]:
    """Parse failures, extracted strings and hallucinated strings of a prediction file."""
    failures = strings = invented = 0
    for record in read_lines(path):
        extractions = get_task(record["task"]).parse_answer(record["output"])
        if extractions is None:
            failures += 1
            continue
        strings += sum(1 for e in extractions for m in e.mentions() if m.text)
        invented += len(hallucinated_mentions(extractions, instruction_input(record)))
    return failures, strings, invented


def test_spans_make_the_tiny_base_unable_to_invent_a_string(tmp_path):
    """Held-out NER-en and EE-en records: unguided, the base still writes a few strings that are not in the input
    (8 of 53 here); with --guided spans it cannot, and every answer parses."""
    test_file = _held_out(tmp_path, ["NER-en", "EE-en"], 8)
    results = {}
    for mode in ("none", "spans"):
        out = tmp_path / f"{mode}.json"
        assert main(["infer", "--model_name_or_path", str(tiny_base_path()), "--input_file", str(test_file),
                     "--output_file", str(out), "--max_new_tokens", "128", "--guided", mode]) == 0
        results[mode] = _measure(out)
    print(f"(parse failures, strings, hallucinated): unguided {results['none']}, spans {results['spans']}")
    failures, strings, invented = results["spans"]
    assert failures == 0 and invented == 0 and strings > 0, results
    assert results["none"][2] > 0, results  # unguided, the same records do get invented strings


@pytest.mark.gpu
def test_vllm_spans_use_the_same_grammar_and_invent_nothing(tmp_path):
    pytest.importorskip("vllm")
    test_file = _held_out(tmp_path, ["NER-en", "EE-en"], 12)
    out = tmp_path / "vllm.json"
    assert main(["infer", "--model_name_or_path", str(tiny_base_path()), "--input_file", str(test_file),
                 "--output_file", str(out), "--max_new_tokens", "200", "--guided", "spans", "--engine", "vllm"]) == 0
    failures, strings, invented = _measure(out)
    assert failures == 0 and invented == 0 and strings > 0


def test_extract_with_spans_keeps_every_string_of_a_document_in_the_text(tmp_path):
    """A document of held-out English sentences and one with real-world names through ``deepke-llm extract``:
    unguided, the base writes a name of its own world for ``Deutsche Bank`` (nowhere in the document); with
    --guided spans every extracted string is found in it."""
    held_out = [json.loads(line) for line in (tiny_base_path() / "held_out" / "NER-en.json").read_text(encoding="utf-8").splitlines()[:8]]
    text = " ".join([instruction_input(r) for r in held_out] + ["Maria Garcia joined Deutsche Bank as an engineer in 2021."])
    write_lines(tmp_path / "docs.json", [{"id": "d1", "text": text}])
    (tmp_path / "schema.json").write_text('["location", "organization", "person"]\n[]\n{}\n', encoding="utf-8")
    stats = {}
    for mode in ("none", "spans"):
        out = tmp_path / f"{mode}.json"
        assert main(["extract", "--input_file", str(tmp_path / "docs.json"), "--output_file", str(out), "--task", "NER",
                     "--schema_path", str(tmp_path / "schema.json"), "--language", "en", "--window_sentences", "1",
                     "--model_name_or_path", str(tiny_base_path()), "--max_new_tokens", "96", "--no-progress",
                     "--guided", mode]) == 0
        extractions = read_lines(out)[0]["extractions"]
        stats[mode] = (len(extractions), sum(e["start"] is None for e in extractions))
        assert all(e["start"] is None or text[e["start"]:e["end"]] == e["text"] for e in extractions)
    assert stats["none"][1] > 0, stats  # the base invents names unguided
    assert stats["spans"][0] > 0 and stats["spans"][1] == 0, stats
