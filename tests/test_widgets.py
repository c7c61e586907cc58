"""``extract`` and the interactive app on top of it, with the committed tiny IE base (a real model that extracts NER).

The sentences come from the base's synthetic ontology (``deepke_llm_core.synthetic``): the base reads them right,
and greedy decoding makes the answers deterministic.
"""

from __future__ import annotations

import json
import threading

import pytest

from deepke_llm_core.convert import ConvertConfig, convert_file
from deepke_llm_core.engines import EngineOptions, TransformersEngine, create_engine
from deepke_llm_core.extract import ExtractionResult, build_instructions, extract
from deepke_llm_core.io import DataError
from deepke_llm_core.prompts import query_of, render_prompt
from deepke_llm_core.records import Entity
from deepke_llm_core.schema import parse_schema_text
from deepke_llm_core.tiny_base import tiny_base_path
from deepke_llm_core.widgets import default_schema_text, extractor_app, tiny_base_schema_text
from tests.conftest import read_lines, write_lines
from tests.icl_server import FakeOpenAI

# The names are held out of the tiny base's training (成都 is one of its training cities): it reads them off the text.
EN = "Sarah Allen joined Meridian Systems as an engineer in 2021."
ZH = "王雨欣出生在成都，现在就职于蓝海科技。"


@pytest.fixture(scope="module")
def tiny_engine() -> TransformersEngine:
    return TransformersEngine.load(tiny_base_path(), batch_size=8)


def found(result: ExtractionResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in result.extractions:
        out.setdefault(e.type, []).append(e.text.text)
    return out


def test_instructions_are_the_converters_test_records(tmp_path):
    schema = default_schema_text("RE", "en")
    (tmp_path / "schema.json").write_text(schema, encoding="utf-8")
    write_lines(tmp_path / "raw.json", [{"text": EN}])
    convert_file(ConvertConfig(src_path=str(tmp_path / "raw.json"), tgt_path=str(tmp_path / "test.json"), task="RE",
                               language="en", schema_path=str(tmp_path / "schema.json"), split="test", split_num=4,
                               source="<text>", progress=False))
    records = build_instructions(EN, "re", schema, "en")
    assert records == [{**r, "source": ""} for r in read_lines(tmp_path / "test.json")]
    assert len(records) == 4 and json.loads(records[0]["instruction"])["input"] == EN  # 14 relations, 4 per instruction
    with pytest.raises(ValueError, match="empty"):
        build_instructions("  ", "NER", schema, "en")


def test_schema_text_in_both_forms_and_located_errors():
    three_lines = parse_schema_text('["person", "location"]\n[]\n{}\n')
    as_object = parse_schema_text('{"type_list": ["person", "location"]}')
    assert three_lines.types == as_object.types == ["person", "location"]
    with pytest.raises(DataError, match="^schema:2: role_list"):
        parse_schema_text('["person"]\n[oops\n{}\n')
    assert json.loads(tiny_base_schema_text("NER", "zh").splitlines()[0]) == ["人物", "地点", "组织机构"]  # no 产品: held out
    assert tiny_base_schema_text("KG", "en") == default_schema_text("KG", "en")


@pytest.mark.parametrize("language, text, expected", [
    ("en", EN, {"person": ["Sarah Allen"], "organization": ["Meridian Systems"]}),
    ("zh", ZH, {"人物": ["王雨欣"], "地点": ["成都"], "组织机构": ["蓝海科技"]}),
])
def test_the_tiny_base_extracts_entities_with_offsets(tiny_engine, language, text, expected):
    result = extract(text, "NER", tiny_base_schema_text("NER", language), tiny_engine, language=language)
    assert len(result.outputs) == 1 and result.parse_errors == 0
    assert found(result) == expected
    for entity in result.extractions:  # every mention located: its offsets slice the text to its string
        assert isinstance(entity, Entity) and text[entity.text.start:entity.text.end] == entity.text.text


def test_several_texts_in_one_call_keep_their_order(tiny_engine):
    results = extract([ZH, EN], "NER", tiny_base_schema_text("NER", "zh"), tiny_engine, language="zh")
    assert [r.text for r in results] == [ZH, EN]
    assert found(results[0]) == {"人物": ["王雨欣"], "地点": ["成都"], "组织机构": ["蓝海科技"]}


def test_an_adapter_is_loaded_onto_its_base(tiny_engine, tmp_path):
    """A freshly initialised LoRA adapter (B = 0) changes nothing: the answers must equal the base's."""
    from peft import LoraConfig, get_peft_model

    from deepke_llm_core.models import load_model_and_tokenizer
    from deepke_llm_core.run_info import write_run_info

    model, _ = load_model_and_tokenizer(str(tiny_base_path()))
    adapter = tmp_path / "adapter"
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    write_run_info(adapter, {"template": "auto", "system_prompt": None})
    with_adapter = TransformersEngine.load(tiny_base_path(), str(adapter))
    schema = tiny_base_schema_text("NER", "en")
    assert extract(EN, "NER", schema, with_adapter).outputs == extract(EN, "NER", schema, tiny_engine).outputs
    with pytest.raises(ValueError, match="trained with --template auto"):
        TransformersEngine.load(tiny_base_path(), str(adapter), template="qwen")


def test_oneke_prompts_with_llama2_zh(tiny_qwen):
    """A model with no stored template (the tiny base stores ``auto`` and would refuse another, as infer does)."""
    oneke = TransformersEngine.load(tiny_qwen, template="llama2_zh")
    record = build_instructions(ZH, "NER", tiny_base_schema_text("NER", "zh"), "zh")[0]
    prompt = oneke.tokenizer.decode(oneke.encode(oneke.messages(query_of(record))))
    assert prompt == render_prompt(query_of(record), "llama2_zh", tokenizer=oneke.tokenizer)
    assert prompt.startswith("[INST] <<SYS>>\nYou are a helpful assistant. 你是一个乐于助人的助手。\n<</SYS>>\n\n{")


class TinyBaseAnswerer:
    """The OpenAI-compatible test server answering with the tiny IE base, as a chat model would be served."""

    def __init__(self, engine: TransformersEngine):
        self.engine = engine
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> tuple[str, int, int]:
        from deepke_llm_core.engines import Sampling

        with self.lock:
            answer = self.engine.generate([body["messages"]], Sampling(max_tokens=256))[0]
        return answer.text, answer.prompt_tokens, answer.completion_tokens


def test_an_openai_compatible_endpoint_extracts_the_same(tiny_engine, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-widgets")
    with FakeOpenAI(TinyBaseAnswerer(tiny_engine)) as server:
        engine = create_engine("ChatGPT", EngineOptions(model_id="tiny-ie-base", base_url=server.url))
        result = extract(EN, "NER", tiny_base_schema_text("NER", "en"), engine)
    assert found(result) == {"person": ["Sarah Allen"], "organization": ["Meridian Systems"]}
    assert server.bodies[0]["model"] == "tiny-ie-base"
    assert json.loads(server.bodies[0]["messages"][-1]["content"])["input"] == EN
    assert server.auth == ["Bearer sk-test-widgets"] and "sk-test" not in repr(engine)


def test_the_app_extracts_on_click(tiny_engine):
    pytest.importorskip("ipywidgets")
    app = extractor_app(text=ZH, language="zh", engine_object=tiny_engine)
    assert json.loads(app.schema.value.splitlines()[0]) == ["人物", "地点", "组织机构"]
    app.button.click()
    assert "done" in app.status.value
    assert '>蓝海科技</mark><span class="dk-label"' in app.result.value and "&quot;王雨欣&quot;" in app.raw.value
    app.task.value = "RE"
    assert json.loads(app.schema.value.splitlines()[1]) == ["就职于", "出生地", "位于", "创始人"]  # the base's relations


def test_the_app_builds_its_engine_from_the_form_and_reports_errors():
    pytest.importorskip("ipywidgets")
    app = extractor_app(text=EN)
    assert app.model.value == str(tiny_base_path()) and app.kind.value == "local model"
    assert app.run() is not None and ">Sarah Allen</mark>" in app.result.value
    assert app.engine_for_form() is app.engine_for_form()  # built once, reused
    app.text.value = ""
    assert app.run() is None and "ValueError" in app.status.value and "empty" in app.status.value
    assert app.result.value == "" and app.raw.value == ""  # the earlier answer is gone
    app.text.value, app.kind.value, app.base_url.value = EN, "ICL API engine", ""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("OPENAI_API_KEY", "DEEPKE_API_KEY", "OPENAI_BASE_URL"):
            patch.delenv(name, raising=False)
        assert app.run() is None and "needs an API key" in app.status.value
