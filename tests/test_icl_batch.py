"""Batch and single ICL through ``deepke-llm icl`` against the local OpenAI-compatible server, and the local engine.

Proves: IEPile instructions are sent as they are and the output is scored by ``deepke-llm evaluate``; bounded
concurrency; retries inside a batch; the cache (a second run makes zero requests); resume after a SIGKILL; a
garbage-returning endpoint stops the batch with every finished record kept; the API key is written nowhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deepke_llm_core.cli import main as cli_main
from deepke_llm_core.icl import EngineOptions, Sampling, build_icl_prompt, create_engine, load_demos
from deepke_llm_core.prompts import query_of

from .conftest import ROOT, read_lines, write_lines
from .icl_server import SECRET, api_engine

pytestmark = pytest.mark.usefixtures("openai_server")


def icl_args(server, input_file, output_file, *extra):
    return ["icl", "--engine", "ChatGPT", "--model_id", "tiny", "--base_url", server.url, "--input_file", str(input_file),
            "--output_file", str(output_file), "--temperature", "0.7", "--max_tokens", "8", "--retry_delay", "0.01",
            "--timeout", "2", "--no-progress", *extra]


def test_batch_sends_instructions_as_they_are_and_evaluate_scores_it(openai_server, ner_files, tmp_path, capsys):
    out = tmp_path / "pred.json"
    assert cli_main(icl_args(openai_server, ner_files["test"], out, "--cache_dir", str(tmp_path / "c"))) == 0
    records = read_lines(ner_files["test"])
    predictions = read_lines(out)
    assert [{k: v for k, v in p.items() if k != "output"} for p in predictions] == records
    sent = sorted(body["messages"][0]["content"] for body in openai_server.bodies)
    assert sent == sorted(query_of(r) for r in records)
    stats = json.loads(capsys.readouterr().out)
    assert stats["requested"] == len(records) and stats["prompt_tokens"] > 0 and stats["complete"]
    assert cli_main(["evaluate", "--path1", str(out)]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    # the tiny random model answers garbage: every instance is scored, and counted as a parse error
    assert total["总样本数"] == len({r["id"] for r in records}) and total["错误数"] == total["总样本数"]


def test_cache_makes_a_rerun_free(openai_server, ner_files, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    assert cli_main(icl_args(openai_server, ner_files["test"], tmp_path / "a.json", "--cache_dir", cache)) == 0
    first = openai_server.count
    assert first == len(read_lines(ner_files["test"]))
    capsys.readouterr()
    assert cli_main(icl_args(openai_server, ner_files["test"], tmp_path / "b.json", "--cache_dir", cache)) == 0
    assert openai_server.count == first  # zero requests the second time
    stats = json.loads(capsys.readouterr().out)
    assert stats["cached"] == first and stats["requested"] == 0 and stats["prompt_tokens"] == 0
    assert read_lines(tmp_path / "a.json") == read_lines(tmp_path / "b.json")
    # a different sampling parameter is a different request
    assert cli_main(icl_args(openai_server, ner_files["test"], tmp_path / "c.json", "--cache_dir", cache,
                             "--top_p", "0.5")) == 0
    assert openai_server.count == 2 * first


def test_concurrency_is_bounded_and_retries_happen_inside_a_batch(openai_server, ner_files, tmp_path):
    openai_server.delay = 0.1
    openai_server.failures = ["429", "500", "hang", "garbage"]
    args = icl_args(openai_server, ner_files["test"], tmp_path / "o.json", "--no_cache", "--concurrency", "2",
                    "--timeout", "0.5")
    assert cli_main(args) == 0
    n = len(read_lines(ner_files["test"]))
    assert len(read_lines(tmp_path / "o.json")) == n
    assert openai_server.count == n + 4 and openai_server.max_inflight == 2


def test_garbage_endpoint_keeps_every_record_already_answered(openai_server, ner_files, tmp_path, capsys):
    out = tmp_path / "o.json"
    openai_server.failures = [None, None, None] + ["garbage"] * 2
    args = icl_args(openai_server, ner_files["test"], out, "--no_cache", "--concurrency", "1", "--max_retries", "1")
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    n = len(read_lines(ner_files["test"]))
    assert "not an OpenAI chat-completion JSON body" in err and f"3 of {n} records are in {out}" in err
    kept = read_lines(out)
    assert len(kept) == 3 and all("output" in r for r in kept)
    openai_server.reset()
    assert cli_main(args) == 0
    final = read_lines(out)
    assert final[:3] == kept and len(final) == n and openai_server.count == n - 3


def test_resume_after_a_kill(openai_server, ner_files, tmp_path):
    out = tmp_path / "o.json"
    openai_server.delay = 0.15
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "deepke_llm_core", *icl_args(openai_server, ner_files["test"], out,
                                                                                 "--no_cache", "--concurrency", "1")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline and (not out.exists() or len(read_lines(out)) < 2):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = read_lines(out)
    n = len(read_lines(ner_files["test"]))
    assert 2 <= len(kept) < n
    openai_server.reset()
    assert cli_main(icl_args(openai_server, ner_files["test"], out, "--no_cache")) == 0
    assert openai_server.count == n - len(kept)
    assert read_lines(out)[:len(kept)] == kept
    assert cli_main(icl_args(openai_server, ner_files["test"], tmp_path / "ref.json", "--no_cache")) == 0
    assert read_lines(out) == read_lines(tmp_path / "ref.json")


def test_api_key_is_never_written(openai_server, ner_files, tmp_path, capsys, caplog, monkeypatch):
    import logging

    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("OPENAI_API_KEY")
    work = tmp_path / "work"
    args = icl_args(openai_server, ner_files["test"], work / "o.json", "--cache_dir", str(work / "cache"), "--api_key", SECRET)
    openai_server.failures = ["429"]
    assert cli_main(args) == 0
    assert cli_main(["icl", "--engine", "ChatGPT", "--model_id", "tiny", "--base_url", openai_server.url, "--api_key",
                     SECRET, "--task", "ner", "--text_input", "Tom", "--cache_dir", str(work / "cache")]) == 0
    openai_server.always = "401echo"
    assert cli_main(["icl", "--engine", "ChatGPT", "--base_url", openai_server.url, "--api_key", SECRET, "--task", "ner",
                     "--text_input", "Tim", "--max_retries", "0"]) == 2
    assert set(openai_server.auth) == {f"Bearer {SECRET}"}
    captured = capsys.readouterr()
    files = [p for p in work.rglob("*") if p.is_file()]
    assert any(p.name == "o.json.run" for p in files) and len(files) > 3
    for path in files:
        assert SECRET not in path.read_text(encoding="utf-8"), path
    assert SECRET not in captured.out + captured.err + caplog.text
    assert "api_key" not in json.dumps(json.loads((work / "o.json.run").read_text(encoding="utf-8")))


def test_single_text_with_demonstrations_sends_the_printed_prompt(openai_server, tmp_path, capsys):
    argv = ["icl", "--engine", "DeepSeek", "--model_id", "tiny", "--base_url", openai_server.url, "--task", "re",
            "--language", "en", "--text_input", "Ann founded Acme.", "--head_entity", "Acme", "--head_type", "org",
            "--tail_entity", "Ann", "--tail_type", "person", "--in_context", "True", "--labels", "founded_by"]
    assert cli_main(argv + ["--print_prompt"]) == 0
    printed = capsys.readouterr().out
    assert openai_server.count == 0
    assert cli_main(argv) == 0
    assert printed.endswith("\n")  # printed as upstream's print() prints; the message is the rest
    printed = printed[:-1]
    assert openai_server.bodies[0]["messages"] == [{"role": "user", "content": printed}]
    assert printed == build_icl_prompt("re", "en", "Ann founded Acme.", head_entity="Acme", head_type="org",
                                       tail_entity="Ann", tail_type="person", labels=["founded_by"],
                                       examples=load_demos("re", "en"))


def test_raw_text_records_get_promptcraft_prompts(openai_server, tmp_path):
    raw = write_lines(tmp_path / "raw.json", [{"id": 1, "text": "Tom met Ann in Rome."}, {"id": 2, "text": "Bo ran."}])
    argv = icl_args(openai_server, raw, tmp_path / "o.json", "--no_cache", "--task", "ner", "--language", "en",
                    "--labels", "PER,LOC", "--in_context", "1")
    assert cli_main(argv) == 0
    demos = load_demos("ner", "en")
    expected = {build_icl_prompt("ner", "en", t, labels=["PER", "LOC"], examples=demos) for t in ("Tom met Ann in Rome.", "Bo ran.")}
    assert {b["messages"][0]["content"] for b in openai_server.bodies} == expected
    assert [r["id"] for r in read_lines(tmp_path / "o.json")] == [1, 2]


@pytest.fixture
def one_torch_thread():
    """The machine is shared with training jobs: a tiny model generates fastest on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_local_engine_runs_the_same_prompts_on_the_tiny_model(openai_server, tiny_qwen, ner_files, tmp_path, capsys,
                                                              one_torch_thread):
    local = create_engine("Qwen", EngineOptions(model_id=str(tiny_qwen), batch_size=4))
    remote = api_engine(openai_server)
    messages = local.messages(build_icl_prompt("rte", "zh", "小明出生于杭州。", examples=load_demos("rte", "zh")))
    mine = local.complete(messages, Sampling(max_tokens=8))
    theirs = remote.complete(messages, Sampling(max_tokens=8))
    assert mine.text == theirs.text and mine.prompt_tokens == theirs.prompt_tokens > 0
    out = tmp_path / "local.json"
    args = ["icl", "--engine", "Qwen", "--model_id", str(tiny_qwen), "--input_file", str(ner_files["test"]),
            "--output_file", str(out), "--max_tokens", "8", "--batch_size", "4", "--cache_dir", str(tmp_path / "c"),
            "--no-progress"]
    assert cli_main(args) == 0
    assert len(read_lines(out)) == len(read_lines(ner_files["test"]))
    capsys.readouterr()
    out.unlink()
    assert cli_main(args) == 0  # the local engine's answers are cached too
    assert json.loads(capsys.readouterr().out)["cached"] == len(read_lines(ner_files["test"]))
    assert cli_main(["icl", "--engine", "Qwen", "--model_id", str(tiny_qwen), "--task", "ner", "--text_input", "Tom",
                     "--max_tokens", "4"]) == 0
    assert openai_server.count == 1  # only the remote comparison above went over HTTP
