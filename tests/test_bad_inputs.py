"""The bad-input corpus (``tests/bad_inputs``) through every command: exit 2, one located line, no traceback.

Each case is (command line, what the message must name). Commands run in-process through ``cli.main``, so an
exception that escaped as a traceback would fail the test with that exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepke_llm_core.cli import main

BAD = Path(__file__).parent / "bad_inputs"
GOOD_SCHEMA = '["person"]\n[]\n{}\n'


def _cases(tmp: Path) -> list[tuple[list[str], list[str]]]:
    schema = tmp / "schema.json"
    schema.write_text(GOOD_SCHEMA, encoding="utf-8")
    out = str(tmp / "out.json")
    convert = ["convert", "--schema_path", str(schema), "--tgt_path", out, "--task", "NER", "--language", "en"]
    cases: list[tuple[list[str], list[str]]] = []
    located = {"truncated.json": ["truncated.json:2", "not valid JSON"], "not_json.json": ["not_json.json:2", "not valid JSON"],
               "pretty.json": ["pretty.json:1", "pretty-printed JSON"], "latin1.json": ["latin1.json:2", "not UTF-8"]}
    for name, expected in located.items():
        cases.append(([*convert, "--src_path", str(BAD / name)], expected))
        cases.append((["evaluate", "--path1", str(BAD / name), "--task", "NER", "--out_path", out], expected))
        cases.append((["infer", "--model_name_or_path", "unused/model", "--input_file", str(BAD / name),
                       "--output_file", out], expected))
        cases.append((["icl", "--engine", "ChatGPT", "--api_key", "unused", "--input_file", str(BAD / name),
                       "--output_file", out], expected))
        cases.append((["finetune", "--model_name_or_path", "unused/model", "--train_file", str(BAD / name),
                       "--output_dir", str(tmp / "run")], expected))
    cases += [
        ([*convert, "--src_path", str(BAD / "not_object.json")], ["not_object.json:1", "expected a JSON object"]),
        (["infer", "--model_name_or_path", "unused/model", "--input_file", str(BAD / "instruction_not_string.json"),
          "--output_file", out], ["instruction_not_string.json:2", "instruction"]),
        (["convert", "--src_path", str(BAD / "not_json.json"), "--schema_path", str(BAD / "schema_two_lines.json"),
          "--tgt_path", out], ["schema_two_lines.json", "expected three lines"]),
        (["convert", "--src_path", str(BAD / "not_json.json"), "--schema_path", str(BAD / "schema_bad_json.json"),
          "--tgt_path", out], ["schema_bad_json.json:2", "role_list"]),
        (["convert", "--src_path", str(BAD / "not_json.json"), "--schema_path", str(BAD / "schema_not_strings.json"),
          "--tgt_path", out], ["schema_not_strings.json:1", "type_list"]),
        (["convert", "--src_path", str(BAD / "not_json.json"), "--schema_path", str(tmp), "--tgt_path", out],
         [str(tmp), "is a directory"]),
        (["convert", "--src_path", str(BAD / "truncated.json"), "--schema_path", str(schema), "--tgt_path", str(tmp)],
         ["--tgt_path is a directory"]),
        (["evaluate", "--path1", str(tmp)], ["--path1", "directory"]),
        (["infer", "--model_name_or_path", "unused/model", "--input_file", str(tmp), "--output_file", out],
         ["--input_file", "directory"]),
        (["finetune", str(BAD / "bad_syntax.yaml")], ["bad_syntax.yaml:", "not valid YAML"]),
        (["finetune", "--stage", "grpo", "--model_name_or_path", "unused/model", "--train_file", str(tmp),
          "--output_dir", str(tmp / "grpo-out")], ["--train_file is a directory"]),
        (["infer", str(BAD / "python_tag.yaml")], ["python_tag.yaml:1", "not valid YAML"]),
        (["icl", str(BAD / "not_mapping.yaml")], ["not_mapping.yaml", "expected a mapping"]),
        (["convert", "--src_path", str(BAD / "truncated.json"), "--tgt_path", out, "--neg_schema", "nan"], ["--neg_schema"]),
        (["infer", "--model_name_or_path", "m", "--input_file", "x", "--output_file", out, "--batch_size", "0"], ["--batch_size"]),
        (["infer", "--model_name_or_path", "m", "--input_file", "x", "--output_file", out, "--cutoff_len", "-5"], ["--cutoff_len"]),
        (["infer", "--model_name_or_path", "m", "--input_file", str(BAD / "instruction_not_string.json"),
          "--output_file", out, "--temperature", "nan"], ["temperature"]),
        (["icl", "--engine", "ChatGPT", "--task", "ner", "--text_input", "t", "--max_retries", "-1"], ["--max_retries"]),
        (["serve", "--model_name_or_path", "m", "--port", "70000"], ["--port"]),
        (["merge", "--output_file", out, "--num_shards", "2"], ["shards not finished"]),
    ]
    return cases


def test_every_bad_input_is_one_located_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    failures = []
    for argv, expected in _cases(tmp_path):
        status = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("[", "Failed to load"))]
        if status != 2 or not all(text in err for text in expected) or "Traceback" in err or len(lines) != 1:
            failures.append((argv[0], argv[1:4], status, err[-400:]))
    assert not failures, "\n".join(map(str, failures))
    assert not (tmp_path / "out.json").exists()  # nothing was written by any of them


@pytest.mark.parametrize("name", ["truncated.json", "not_json.json", "pretty.json", "latin1.json", "not_object.json"])
def test_the_corpus_files_are_really_bad(name):
    import json

    with pytest.raises((ValueError, UnicodeDecodeError)):
        for line in (BAD / name).read_bytes().decode("utf-8").splitlines():
            value = json.loads(line)
            if not isinstance(value, dict):
                raise ValueError("not an object")
