"""Documents of any length: sentence windows, merging with document offsets, reading documents, and
``deepke-llm extract`` end to end on the tiny IE base (offsets, recall against sentence by sentence, the last
sentence, a kill mid-run that resumes to the same output, an endpoint engine)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepke_llm_core.cli import main as cli_main
from deepke_llm_core.documents import (Window, estimate_tokens, make_windows, merge_windows, read_documents, shift,
                                       split_sentences)
from deepke_llm_core.engines import Sampling, TransformersEngine
from deepke_llm_core.extract import document_scores, extract
from deepke_llm_core.io import DataError
from deepke_llm_core.records import Entity, Mention
from deepke_llm_core.synthetic import make_document
from deepke_llm_core.tasks import get_task
from deepke_llm_core.tiny_base import HELD_OUT_TYPE, tiny_base_path
from deepke_llm_core.widgets import tiny_base_schema_text

from .conftest import ROOT, read_lines, write_lines

NER = get_task("NER")


def test_sentences_end_at_chinese_and_english_punctuation_and_cover_the_text():
    text = ('张伟说：“我们走吧！”李娜去了北京。真的吗？是的…好\n'
            'Dr. Smith met J. Brown at 3.5 p.m. in the U.S. Army base. "Really?" she asked. Yes!\nEnd')
    pieces = [text[s:e] for s, e in split_sentences(text)]
    assert "".join(pieces) == text
    assert [p.strip() for p in pieces] == ['张伟说：“我们走吧！”', '李娜去了北京。', '真的吗？', '是的…', '好',
                                          'Dr. Smith met J. Brown at 3.5 p.m. in the U.S. Army base.',
                                          '"Really?" she asked.', 'Yes!', 'End']


def test_windows_are_slices_under_the_budget_with_an_overlap():
    document = make_document("NER", "en", 1500, seed=3)
    text = document["text"]
    windows = make_windows(text, 60, 20, estimate_tokens)
    assert len(windows) > 5 and all(text[w.start:w.end] == w.text for w in windows)
    sentences = [(s, e) for s, e in document["sentences"]]
    for window in windows:  # whole sentences, under the budget
        inside = [text[s:e] for s, e in sentences if window.start <= s and e <= window.end]
        assert window.text == " ".join(inside) and sum(estimate_tokens(inside)) <= 60
    for before, after in zip(windows, windows[1:]):  # progress, and an overlap of at most 20 tokens
        assert before.start < after.start <= before.end < after.end
        shared = [text[s:e] for s, e in sentences if after.start <= s and e <= before.end]
        assert sum(estimate_tokens(shared)) <= 20
    assert any(after.start < before.end for before, after in zip(windows, windows[1:]))
    assert windows[0].start == 0 and windows[-1].end == len(text)


def test_a_sentence_longer_than_the_budget_is_cut_at_clauses_spaces_then_characters():
    text = "甲" * 50 + "，" + "乙" * 10 + "。" + " ".join(["word"] * 30) + "."
    windows = make_windows(text, 12, 0, estimate_tokens)
    assert all(estimate_tokens([w.text])[0] <= 12 for w in windows)
    assert "".join(w.text for w in windows).replace(" ", "") == text.replace(" ", "")
    assert make_windows("Short text.  ", 12, 4)[0] == Window(0, 0, 13, "Short text.  ")  # within budget: as is
    with pytest.raises(ValueError, match="smaller than window_tokens"):
        make_windows(text, 10, 10)


def test_merging_drops_a_mention_seen_twice_in_an_overlap_and_keeps_document_offsets():
    text = "Tom met Ann. Ann met Bob. Bob met Kim."
    first, second = Window(0, 0, 25, text[:25]), Window(1, 13, 38, text[13:])
    ann = Entity(Mention("Ann", 8, 11, "exact"), "person")
    merged = merge_windows([
        (first, [Entity(Mention("Tom", 0, 3, "exact"), "person"), ann, Entity(Mention("Ann", 13, 16, "exact"), "person"),
                 Entity(Mention("Zed", status="not_found"), "person")]),
        (second, [Entity(Mention("Ann", 0, 3, "exact"), "person"), Entity(Mention("Bob", 8, 11, "exact"), "person"),
                  Entity(Mention("Bob", 8, 11, "exact"), "person"), Entity(Mention("Zed", status="not_found"), "person")]),
    ])
    assert [(e.text.text, e.text.start) for e in merged] == [
        ("Tom", 0), ("Ann", 8), ("Ann", 13), ("Bob", 21), ("Bob", 21), ("Zed", None)]  # repeats in one answer stay
    assert all(text[e.text.start:e.text.end] == e.text.text for e in merged if e.text.start is not None)
    assert shift(ann, 5).text.start == 13 and ann.text.start == 8


def test_documents_from_json_lines_with_gold_or_a_folder_and_located_errors(tmp_path):
    path = write_lines(tmp_path / "docs.json", [{"id": "a", "text": "Tom met Ann. Tom left.", "entity": [
        {"entity": "Tom", "entity_type": "person"}, {"entity": "Tom", "entity_type": "person"}]}, {"text": "No id here."}])
    first, second = read_documents(str(path), NER)
    assert (first.id, second.id, second.gold) == ("a", 2, None)
    assert first.gold == [Entity.of("Tom", "person")] * 2  # in a document, a name mentioned twice is two mentions
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "b.txt").write_text("第二篇。", encoding="utf-8")
    (folder / "a.txt").write_text("First one.", encoding="utf-8")
    assert [(d.id, d.text) for d in read_documents(str(folder))] == [("a", "First one."), ("b", "第二篇。")]
    for lines, where in (([{"id": "x", "text": "ok"}, {"id": "x", "text": "again"}], ":2: id: 'x' is a duplicate"),
                         ([{"id": "x", "text": " "}], ":1: text: only whitespace"),
                         ([{"id": "x", "text": "ok", "entity": [{"entity": 3}]}], ":1: entity[0].entity")):
        with pytest.raises(DataError, match=re.escape(where)):
            read_documents(str(write_lines(tmp_path / "bad.json", lines)), NER)


def test_an_output_file_that_no_extract_run_wrote_is_refused(tmp_path, capsys):
    (tmp_path / "schema.json").write_text(tiny_base_schema_text("NER", "en"), encoding="utf-8")
    docs = write_lines(tmp_path / "docs.json", [{"id": "a", "text": "Tom met Ann."}])
    out = tmp_path / "precious.json"
    out.write_text("someone's results\n", encoding="utf-8")
    assert cli_main(extract_args(tmp_path, docs, out, "--model_name_or_path", str(tiny_base_path()))) == 2
    assert "no run of deepke-llm extract wrote it" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "someone's results\n"


@pytest.fixture(scope="module")
def engine() -> TransformersEngine:
    return TransformersEngine.load(tiny_base_path(), batch_size=16, cutoff_len=512)


def document_for(language: str, chars: int) -> dict:
    return make_document("NER", language, chars, seed=7, exclude=(HELD_OUT_TYPE,))


@pytest.mark.parametrize("language, chars", [("zh", 300), ("en", 500)])
def test_a_long_document_against_its_sentences_one_by_one(engine, language, chars):
    """Offsets slice the document to each string, recall is within 5 points of sentence by sentence, and the last
    sentence's entities are found where they are. One sentence per window: the tiny base was trained on single
    sentences and reads several at once much worse (bench/long_documents.py measures both)."""
    document = document_for(language, chars)
    text, schema, sampling = document["text"], tiny_base_schema_text("NER", language), Sampling(max_tokens=96)
    whole = extract(text, "NER", schema, engine, language=language, sampling=sampling, every_mention=True,
                    window_sentences=1)
    assert whole.windows == len(document["sentences"]) > 5
    for extraction in whole.extractions:
        (mention,) = extraction.mentions()
        assert mention.status == "not_found" or text[mention.start:mention.end] == mention.text
    sentences = [text[s:e] for s, e in document["sentences"]]
    one_by_one = extract(sentences, "NER", schema, engine, language=language, sampling=sampling, every_mention=True)

    class Sentences:  # the sentence results as one prediction for the document
        extractions = [e for r in one_by_one for e in r.extractions]
        parse_errors = sum(r.parse_errors for r in one_by_one)

    from deepke_llm_core.documents import Document

    gold = Document("d", text, NER.gold_tuples(document["entity"]))
    recall_document = document_scores(NER, [gold], [whole])["R"]
    recall_sentences = document_scores(NER, [gold], [Sentences])["R"]
    assert recall_sentences > 30 and abs(recall_document - recall_sentences) <= 5, (recall_document, recall_sentences)
    start, end = document["sentences"][-1]
    last = {(e.type, e.text.text) for e in whole.extractions if e.text.start is not None and start <= e.text.start < end}
    assert last == {(e.type, e.text.text) for e in one_by_one[-1].extractions if e.text.start is not None}
    assert last, "the last sentence has extractions"


def extract_args(tmp_path: Path, docs: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", "--input_file", str(docs), "--output_file", str(out), "--task", "NER",
            "--schema_path", str(tmp_path / "schema.json"), "--language", "en", "--max_new_tokens", "64",
            "--window_tokens", "40", "--overlap_tokens", "16", "--no-progress", *extra]


def test_the_cli_writes_one_line_per_document_with_offsets_and_a_document_f1(engine, tmp_path, capsys):
    document = document_for("en", 300)
    (tmp_path / "schema.json").write_text(tiny_base_schema_text("NER", "en"), encoding="utf-8")
    docs = write_lines(tmp_path / "docs.json", [{k: document[k] for k in ("id", "text", "entity")},
                                                {"id": "short", "text": "Tom Clark met Alice Smith in Paris."}])
    out = tmp_path / "out.json"
    assert cli_main(extract_args(tmp_path, docs, out, "--model_name_or_path", str(tiny_base_path()))) == 0
    stats = json.loads(capsys.readouterr().out)
    lines = read_lines(out)
    assert [line["id"] for line in lines] == [document["id"], "short"] and lines[1]["windows"] == 1
    for line, text in zip(lines, (document["text"], "Tom Clark met Alice Smith in Paris.")):
        assert line["extractions"] and all(set(item) >= {"type", "text", "start", "end"} for item in line["extractions"])
        assert all(text[i["start"]:i["end"]] == i["text"] for i in line["extractions"] if "status" not in i)
    assert stats["documents"] == 2 and stats["windows"] == lines[0]["windows"] + 1 > 3
    assert stats["document_scores"]["总样本数"] == 1 and stats["document_scores"]["R"] > 0  # only the first has gold
    # the same from Python, with the same engine
    python = extract(document["text"], "NER", tiny_base_schema_text("NER", "en"), engine, language="en",
                     sampling=Sampling(max_tokens=64), window_tokens=40, overlap_tokens=16, every_mention=True)
    assert [e.to_json() for e in python.extractions] == lines[0]["extractions"]


@pytest.fixture
def served_tiny_base(engine):
    from deepke_llm_core.serve import ChatModel, start_server

    url, stop = start_server(ChatModel(engine))
    yield url
    stop()


def test_a_kill_mid_run_resumes_to_the_same_output_through_an_endpoint(served_tiny_base, tmp_path, capsys, monkeypatch):
    """``--engine openai`` against the tiny base served over HTTP; the first run is a real process, killed."""
    monkeypatch.setenv("OPENAI_API_KEY", "unused-local")
    document = document_for("en", 700)
    (tmp_path / "schema.json").write_text(tiny_base_schema_text("NER", "en"), encoding="utf-8")
    docs = write_lines(tmp_path / "docs.json", [{"id": "doc", "text": document["text"]}])
    endpoint = ["--engine", "openai", "--base_url", served_tiny_base, "--model_id", "tiny-ie-base", "--concurrency", "1"]
    out = tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "deepke_llm_core", *extract_args(tmp_path, docs, out, *endpoint)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    side = Path(f"{out}.windows")
    deadline = time.time() + 120
    while time.time() < deadline and (not side.exists() or len(read_lines(side)) < 3):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(read_lines(side))
    assert kept >= 3 and not out.exists()
    assert cli_main(extract_args(tmp_path, docs, out, *endpoint)) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["already_done"] == kept and resumed["requested"] == resumed["requests"] - kept > 0
    assert cli_main(extract_args(tmp_path, docs, tmp_path / "ref.json", *endpoint)) == 0
    assert out.read_bytes() == (tmp_path / "ref.json").read_bytes()
    assert read_lines(out)[0]["extractions"], "real extractions came back over HTTP"
    # another budget is another run: refused, nothing touched
    capsys.readouterr()
    assert cli_main(extract_args(tmp_path, docs, out, *endpoint, "--window_tokens", "50")) == 2
    assert "window_tokens: 40 -> 50" in capsys.readouterr().err


@pytest.mark.gpu
def test_vllm_reads_a_document_as_the_transformers_engine_does(tmp_path, capsys):
    """The same windows (vLLM's tokenizer counts them), the same greedy answers, the same output file."""
    pytest.importorskip("vllm")
    document = document_for("zh", 400)
    (tmp_path / "schema.json").write_text(tiny_base_schema_text("NER", "zh"), encoding="utf-8")
    docs = write_lines(tmp_path / "docs.json", [{"id": "d", "text": document["text"]}])
    for name in ("hf", "vllm"):
        args = extract_args(tmp_path, docs, tmp_path / f"{name}.json", "--model_name_or_path", str(tiny_base_path()),
                            "--engine", name, "--language", "zh", "--window_sentences", "1")
        assert cli_main(args) == 0
    assert (tmp_path / "vllm.json").read_bytes() == (tmp_path / "hf.json").read_bytes()
