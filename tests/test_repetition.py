"""The repetition guard: a looping generation is stopped early (finish_reason "repetition") and counted; an answer
that does not loop is untouched."""

from __future__ import annotations

import json

import pytest
import torch

from deepke_llm_core.engines import Sampling, TransformersEngine
from deepke_llm_core.engines.local import REPETITION_RULE, RepetitionGuard
from deepke_llm_core.extract import ExtractArguments, extract, extract_file
from deepke_llm_core.tiny_base import tiny_base_path
from deepke_llm_core.widgets import tiny_base_schema_text

from .conftest import write_lines


def test_the_rule_is_a_block_of_4_to_32_tokens_repeated_4_times():
    prompt = [7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]  # a repetitive prompt does not count
    rows = {
        "period 5, four times": [9, 8] + [1, 2, 3, 4, 5] * 4,
        "period 1, sixteen times": [9] + [3] * 16,
        "period 2, eight times": [4, 6] * 8,
        "period 32, four times": list(range(100, 132)) * 4,
        "period 5, three times": [9, 8, 9] + [1, 2, 3, 4, 5] * 3,
        "period 1, fifteen times": [9] * 5 + [3] * 15,
        "no loop": list(range(40, 60)),
    }
    width = max(len(r) for r in rows.values())
    batch = torch.tensor([prompt + [0] * (width - len(r)) + r for r in rows.values()])
    guard = RepetitionGuard(len(prompt))
    hit = guard(batch, None).tolist()
    assert dict(zip(rows, hit)) == {"period 5, four times": True, "period 1, sixteen times": True,
                                    "period 2, eight times": True, "period 32, four times": True,
                                    "period 5, three times": False, "period 1, fifteen times": False, "no loop": False}
    assert guard.stopped_at == {0: width, 1: width, 2: width, 3: width}
    assert REPETITION_RULE == {"min_pattern_size": 4, "max_pattern_size": 32, "min_count": 4}  # vLLM's names


@pytest.fixture(scope="module")
def looping(tiny_qwen) -> TransformersEngine:
    """A random-init tiny model: greedy decoding falls into a loop at once, as small models do on unseen input."""
    return TransformersEngine.load(str(tiny_qwen), batch_size=4)


def test_a_looping_generation_is_stopped_early_and_counted(looping):
    prompts = [looping.messages(q) for q in ("Tom met Ann in Paris.", "张伟加入了华为公司。", "Siemens hired Kevin Wang.")]
    looping.repetition_guard = False
    free = looping.generate(prompts, Sampling(max_tokens=96))
    looping.repetition_guard, before = True, looping.guarded
    guarded = looping.generate(prompts, Sampling(max_tokens=96))
    assert [c.finish_reason for c in free] == ["length"] * 3 and [c.completion_tokens for c in free] == [96] * 3
    assert [c.finish_reason for c in guarded] == ["repetition"] * 3 and looping.guarded - before == 3
    for loose, stopped in zip(free, guarded):
        assert stopped.completion_tokens < 48 and loose.tokens[:len(stopped.tokens)] == stopped.tokens  # only stopped


def test_extract_reports_the_guarded_generations(looping, tmp_path):
    (tmp_path / "schema.json").write_text(tiny_base_schema_text("NER", "en"), encoding="utf-8")
    docs = write_lines(tmp_path / "docs.json", [{"id": "a", "text": "Tom met Ann. Ann met Bob. Bob met Kim."}])
    stats = extract_file(ExtractArguments(input_file=str(docs), output_file=str(tmp_path / "out.json"), task="NER",
                                          schema_path=str(tmp_path / "schema.json"), window_tokens=8, overlap_tokens=0,
                                          max_new_tokens=64, progress=False), engine=looping)
    n = stats["requests"]
    assert n == stats["windows"] >= 3 and stats["repetition_guarded"] == n and stats["finish_reasons"] == {"repetition": n}
    assert json.loads((tmp_path / "out.json").read_text())["parse_errors"] == n


def test_an_answer_that_does_not_loop_is_untouched():
    engine = TransformersEngine.load(tiny_base_path(), batch_size=4)
    text = "Maria Garcia joined Deutsche Bank as an engineer in 2021."
    guarded = extract(text, "NER", tiny_base_schema_text("NER", "en"), engine, sampling=Sampling(max_tokens=96))
    engine.repetition_guard = False
    free = extract(text, "NER", tiny_base_schema_text("NER", "en"), engine, sampling=Sampling(max_tokens=96))
    assert guarded.outputs == free.outputs and engine.guarded == 0 and guarded.extractions
