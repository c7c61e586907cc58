"""tiny_base's training phases: the short-prompt form of a record and what each phase trains on."""

from __future__ import annotations

import json

import pytest

from deepke_llm_core import synthetic
from deepke_llm_core.tiny_base import Phase, _shuffled_union, build_corpus, short_prompt, with_phase_table


def _record(text: str) -> str:
    instruction = {"instruction": "你是专门进行实体抽取的专家。", "schema": ["人物", "地点"], "input": text}
    return json.dumps({"task": "NER", "source": "synthetic-NER-zh", "instruction": json.dumps(instruction, ensure_ascii=False),
                       "output": json.dumps({"人物": ["张三"], "地点": []}, ensure_ascii=False)}, ensure_ascii=False)


def test_short_prompt_drops_only_the_instruction_text():
    line = _record("张三在这里。")
    short, full = json.loads(short_prompt(line)), json.loads(line)
    assert json.loads(short["instruction"]) == {"schema": ["人物", "地点"], "input": "张三在这里。"}
    assert {k: v for k, v in short.items() if k != "instruction"} == {k: v for k, v in full.items() if k != "instruction"}


@pytest.mark.parametrize("prompt, n_full, n_short", [("full", 3, 0), ("short", 0, 3), ("mixed", 3, 3)])
def test_each_phase_prompt_trains_on_its_forms(tmp_path, prompt, n_full, n_short):
    source = tmp_path / "train.json"
    source.write_text("\n".join(_record(f"句子{i}。") for i in range(3)) + "\n", encoding="utf-8")
    out = _shuffled_union([source], tmp_path / f"out-{prompt}.json", seed=1, prompt=prompt)
    forms = [json.loads(json.loads(line)["instruction"]) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sum("instruction" in f for f in forms) == n_full and sum("instruction" not in f for f in forms) == n_short
    assert sorted(f["input"] for f in forms) == sorted([f"句子{i}。" for i in range(3)] * ((n_full > 0) + (n_short > 0)))


def test_phase_prompt_is_checked_and_shown_in_the_table():
    with pytest.raises(ValueError, match="prompt"):
        Phase({"NER": 10}, 100, 1e-3, prompt="long")
    summary = {"phase": 1, "records": {"NER": 10}, "steps": 100, "learning_rate": 1e-3, "prompt": "short",
               "train_runtime_minutes": 1.0, "held_out": {"NER-zh": {"F1": 50.0}, "well_formed": 100.0}}
    table = with_phase_table("<!-- phases: made by tiny_base.py from recipe.json -->\n<!-- /phases -->", [summary])
    assert "| 1 | NER 10 (short prompts) | 100 | 0.001 | 1.0 | 50.0 | 100.0 |" in table
    later = {**summary, "phase": 2, "held_out": {"NER-zh": {"F1": 60.0}, "RE-zh": {"F1": 9.0}, "well_formed": 99.0}}
    table = with_phase_table(table, [summary, later])  # a phase that did not train on a task shows "-" for it
    assert "| 1 | NER 10 (short prompts) | 100 | 0.001 | 1.0 | 50.0 | - | 100.0 |" in table
    assert "| 2 | NER 10 (short prompts) | 100 | 0.001 | 1.0 | 60.0 | 9.0 | 99.0 |" in table


def test_a_phase_with_novel_names_adds_that_share_of_invented_records(tmp_path):
    with pytest.raises(ValueError, match="novel"):
        Phase({"NER": 10}, 100, 1e-3, novel=-1)
    plain = build_corpus(tmp_path / "plain", {"RE": 20}, n_test=5)
    novel = build_corpus(tmp_path / "novel", {"RE": 20}, n_test=5, novel=0.5)
    for before, after in zip(plain["train"], novel["train"]):
        old, new = before.read_text(encoding="utf-8").splitlines(), after.read_text(encoding="utf-8").splitlines()
        assert len(old) == 20 and len(new) == 30
        language = before.parent.name.rsplit("-", 1)[1]
        invented = {n for values in synthetic.vocabulary(language, "novel").values() for n in values}
        inputs = [json.loads(json.loads(line)["instruction"])["input"] for line in new]
        assert sum(any(n in text for n in invented) for text in inputs) >= 10
    assert [p.read_text() for p in plain["test"]] == [p.read_text() for p in novel["test"]]
