"""One engine object behind every caller, and the resume contract of the runner they share.

The first test is the design in one place: ``infer``, ``icl``, ``serve`` and ``extract`` (what the widget calls) are
handed the *same* ``TransformersEngine`` and must give the same answer for the same prompt.
"""

from __future__ import annotations

import json
import shutil

import pytest

from deepke_llm_core.engines import EngineOptions, Sampling, TransformersEngine, create_engine
from deepke_llm_core.engines.runner import run_to_file
from deepke_llm_core.extract import build_instructions, extract
from deepke_llm_core.icl.batch import run_batch
from deepke_llm_core.io import DataError
from deepke_llm_core.predict import InferArguments, run_inference
from deepke_llm_core.prompts import query_of
from deepke_llm_core.serve import ChatModel, start_server
from deepke_llm_core.tiny_base import tiny_base_path
from deepke_llm_core.widgets import tiny_base_schema_text
from tests.conftest import read_lines, write_lines

TEXT = "Maria Garcia joined Deutsche Bank as an engineer in 2021."


@pytest.fixture(scope="module")
def engine() -> TransformersEngine:
    return TransformersEngine.load(tiny_base_path(), batch_size=4, cutoff_len=512)


def test_infer_icl_serve_and_extract_share_one_engine_and_one_answer(engine, tmp_path, monkeypatch):
    record = build_instructions(TEXT, "NER", tiny_base_schema_text("NER", "en"), "en")[0]
    test_file = write_lines(tmp_path / "test.json", [record])
    sampling = Sampling(max_tokens=128)
    direct = engine.complete(engine.messages(query_of(record)), sampling).text
    assert json.loads(direct)["person"] == ["Maria Garcia"]  # a real answer, not an empty one

    args = InferArguments(model_name_or_path=str(tiny_base_path()), input_file=str(test_file),
                          output_file=str(tmp_path / "infer.json"), max_new_tokens=128)
    run_inference(args, engine=engine)
    run_batch([record], str(tmp_path / "icl.json"), engine, sampling)
    widget = extract(TEXT, "NER", tiny_base_schema_text("NER", "en"), engine, sampling=sampling)
    url, stop = start_server(ChatModel(engine))
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "unused-local")
        served = create_engine("ChatGPT", EngineOptions(model_id=tiny_base_path().name, base_url=url))
        over_http = served.complete(engine.messages(query_of(record)), sampling).text
    finally:
        stop()
    answers = {"infer": read_lines(tmp_path / "infer.json")[0]["output"], "icl": read_lines(tmp_path / "icl.json")[0]["output"],
               "extract": widget.outputs[0], "serve": over_http}
    assert answers == {name: direct for name in answers}


class CountingEngine:
    """A stand-in endpoint that answers with a record's own text, counting calls (the runner is what is tested)."""

    name, concurrent = "counting", True

    def __init__(self, model: str = "m"):
        self.model, self.calls = model, 0

    def identity(self):
        return {"engine": self.name, "model": self.model}

    def messages(self, query):
        return [{"role": "user", "content": query}]

    def complete(self, messages, sampling, schema=None):
        from deepke_llm_core.engines import Completion

        self.calls += 1
        return Completion("answer to " + messages[-1]["content"])


def _records(n: int) -> list[dict]:
    return [{"id": str(i), "instruction": f"text {i}"} for i in range(n)]


def _run(records, out, engine=None, **settings):
    engine = engine or CountingEngine()
    return run_to_file(records, str(out), engine, Sampling(), lambda r: engine.messages(r["instruction"]),
                       settings=settings, progress=False)


def test_a_rerun_of_the_same_run_continues_and_changed_runs_are_refused(tmp_path):
    out = tmp_path / "o.json"
    records = _records(6)
    first = _run(records[:6], out)
    assert first["answered"] == 6
    # kill simulated: the last three lines gone; the same run continues with only those three
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:10], encoding="utf-8")
    engine = CountingEngine()
    assert _run(records, out, engine)["already_done"] == 3 and engine.calls == 3
    assert out.read_text(encoding="utf-8").splitlines(keepends=True) == lines
    before = out.read_bytes()
    refusals = {
        "other model": lambda: _run(records, out, CountingEngine("another")),
        "other settings": lambda: _run(records, out, cutoff_len=7),
        "reordered input": lambda: _run([records[1], records[0], *records[2:]], out),
        "removed record": lambda: _run(records[1:], out),
    }
    for why, attempt in refusals.items():
        with pytest.raises(DataError, match="Choose another --output_file") as error:
            attempt()
        assert out.read_bytes() == before, why  # nothing on disk touched
        if why == "other model":
            assert "'m' -> 'another'" in str(error.value)


def test_an_unrelated_file_at_the_output_path_is_never_taken_as_predictions(tmp_path):
    out = write_lines(tmp_path / "mine.json", [{"id": "0", "instruction": "text 0", "output": "my own notes"}])
    before = out.read_bytes()
    with pytest.raises(DataError, match="no run of this command wrote it"):
        _run(_records(2), out)
    assert out.read_bytes() == before and not (tmp_path / "mine.json.run").exists()


def test_a_pending_answer_to_another_record_is_refused(tmp_path):
    out = tmp_path / "o.json"
    _run(_records(3), out)
    shutil.copy(tmp_path / "o.json.run", tmp_path / "p.json.run")
    (tmp_path / "p.json.pending").write_text(json.dumps({"index": 1, "hash": "0" * 16, "output": "x"}) + "\n")
    with pytest.raises(DataError, match="holds an answer to a record that is not in this input"):
        _run(_records(3), tmp_path / "p.json")
