"""The extraction reward (``rewards.py``) on real converted records of every task: its four promised orderings,
its agreement with the evaluator, and its TRL form."""

from __future__ import annotations

import json

import pytest

from deepke_llm_core.convert import ConvertConfig, convert_file
from deepke_llm_core.evaluate import evaluate_records, prf
from deepke_llm_core.rewards import (REWARD_FUNCTIONS, RewardWeights, extraction_reward, match_counts, reward_terms)
from deepke_llm_core.tasks import TASKS, get_task
from tests.conftest import DATA, read_lines

CASES = [(task, language) for task in TASKS for language in ("en", "zh")]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[tuple[str, str], list[dict]]:
    """The bundled sample of every task and language, converted to training records (gold = ``output``)."""
    out = {}
    root = tmp_path_factory.mktemp("rewards")
    for task, language in CASES:
        folder = DATA / language / task
        target = root / f"{task}-{language}.json"
        convert_file(ConvertConfig(src_path=str(folder / "sample.json"), tgt_path=str(target), language=language,
                                   schema_path=str(folder / "schema.json"), task=task, split="train", progress=False))
        out[task, language] = read_lines(target)
    return out


def ner_record(output: dict, text: str = "Tom met Ann in Paris.") -> dict:
    instruction = {"instruction": "...", "schema": ["person", "location"], "input": text}
    return {"task": "NER", "instruction": json.dumps(instruction), "output": json.dumps(output)}


RECORD = ner_record({"person": ["Tom", "Ann"], "location": ["Paris"]})


@pytest.mark.parametrize("task,language", CASES)
def test_the_gold_answer_scores_exactly_one(converted, task, language):
    records = converted[task, language]
    assert records
    for record in records:
        assert extraction_reward(record["output"], record) == 1.0, record


@pytest.mark.parametrize("task,language", CASES)
def test_an_empty_answer_to_a_non_empty_label_scores_zero(converted, task, language):
    task_obj = get_task(task)
    checked = 0
    for record in converted[task, language]:
        gold = json.loads(record["output"])
        if not task_obj.parse_output(gold):
            continue
        empty = {key: ({} if isinstance(value, dict) else []) for key, value in gold.items()}
        assert extraction_reward(json.dumps(empty, ensure_ascii=False), record) == 0.0
        checked += 1
    assert checked > 0


def test_a_non_json_answer_is_below_every_json_answer():
    not_json = ['{"person": ["Tom"', "Tom, Ann; Paris", "", "[]", '"Tom"']
    json_answers = [
        {}, {"person": [], "location": []}, {"people": ["Zed"]}, {"person": ["Zed", "Kim"], "location": ["Rome"], "x": []},
        {"person": ["Tom"], "location": ["Paris"]}, {"person": "Tom"},
    ]
    worst_json = min(extraction_reward(json.dumps(a), RECORD) for a in json_answers)
    for answer in not_json:
        assert extraction_reward(answer, RECORD) < worst_json, answer
        assert reward_terms(answer, RECORD).format == -1.0
    # holds for other weights too, as long as the format term counts at all
    weights = RewardWeights(f1=2.0, format=0.05, grounding=3.0)
    assert extraction_reward("no", RECORD, weights) < min(extraction_reward(json.dumps(a), RECORD, weights) for a in json_answers)


@pytest.mark.parametrize("answer,invented", [
    ({"person": ["Tom", "Ann"], "location": ["Paris"]}, {"person": ["Tom", "Ann", "Bob"], "location": ["Paris"]}),
    ({"person": ["Tom"], "location": []}, {"person": ["Tom"], "location": ["Rome"]}),
    ({"person": [], "location": []}, {"person": ["Zed"], "location": []}),
])
def test_an_invented_string_lowers_the_reward(answer, invented):
    assert extraction_reward(json.dumps(invented), RECORD) < extraction_reward(json.dumps(answer), RECORD)
    assert reward_terms(json.dumps(invented), RECORD).grounding < reward_terms(json.dumps(answer), RECORD).grounding == 0.0


def test_grounding_alone_separates_an_invented_string_from_a_wrong_but_present_one():
    """Same F1 and format; only the string that is nowhere in the text is penalised."""
    wrong_present = reward_terms('{"person": ["Tom"], "location": ["Ann"]}', RECORD)
    wrong_invented = reward_terms('{"person": ["Tom"], "location": ["Oslo"]}', RECORD)
    assert (wrong_present.f1, wrong_present.format) == (wrong_invented.f1, wrong_invented.format)
    assert wrong_invented.grounding == -0.5 and wrong_present.grounding == 0.0
    assert extraction_reward('{"person": ["Tom"], "location": ["Oslo"]}', RECORD) < extraction_reward(
        '{"person": ["Tom"], "location": ["Ann"]}', RECORD)


def test_a_gold_string_that_is_not_in_the_text_is_not_penalised():
    """Annotators normalise some values; the gold answer must still score 1."""
    record = ner_record({"person": ["Thomas"], "location": []}, text="Tom lives here.")
    assert reward_terms('{"person": ["Thomas"], "location": []}', record).grounding == 0.0
    assert reward_terms('{"person": ["Tomas"], "location": []}', record).grounding == -1.0


def test_format_term_wants_exactly_the_schema_keys():
    assert reward_terms('{"person": [], "location": []}', RECORD).format == 0.0
    assert reward_terms('{"person": []}', RECORD).format == -0.5
    assert reward_terms('{"person": [], "location": [], "date": []}', RECORD).format == -0.5
    assert reward_terms("oops", RECORD).format == -1.0


def test_f1_term_is_the_evaluators_f1_for_that_record(converted):
    """One prediction record scored by ``evaluate`` gives the F1 the reward uses (NER and RE, one scoring level)."""
    for task in ("NER", "RE"):
        records = converted[task, "en"]
        for record, other in zip(records, records[1:] + records[:1]):
            for answer in (record["output"], other["output"], "{}"):
                gold = [{"entity": v, "entity_type": k} for k, vs in json.loads(record["output"]).items() for v in vs] \
                    if task == "NER" else \
                    [{"head": p["subject"], "relation": k, "tail": p["object"]} for k, ps in json.loads(record["output"]).items() for p in ps]
                scored = evaluate_records([{**record, "id": 1, "label": gold, "output": answer}], task)["total"]
                tp, pred, n_gold = match_counts(get_task(task), json.loads(answer), json.loads(record["output"]))
                assert prf(tp, pred, n_gold)["F1"] == scored["F1"]
                if pred + n_gold:
                    assert reward_terms(answer, record).f1 * 100 == pytest.approx(scored["F1"], abs=0.01)


def test_a_test_record_is_rewarded_against_its_label_not_its_output():
    """Prediction records carry the model's answer in ``output``; the gold is then ``label``."""
    record = {**RECORD, "output": '{"person": ["Zed"]}',
              "label": [{"entity": "Tom", "entity_type": "person"}, {"entity": "Ann", "entity_type": "person"},
                        {"entity": "Paris", "entity_type": "location"}]}
    assert extraction_reward('{"person": ["Tom", "Ann"], "location": ["Paris"]}', record) == 1.0


def test_the_trl_functions_sum_to_the_reward_with_the_same_weights():
    answers = ['{"person": ["Tom", "Bob"], "location": []}', "oops", '{"person": ["Tom"], "location": ["Paris"], "x": []}']
    columns = {"task": ["NER"] * 3, "instruction": [RECORD["instruction"]] * 3, "output": [RECORD["output"]] * 3}
    weights = RewardWeights(f1=1.0, format=0.3, grounding=0.7)
    terms = [fn(prompts=["p"] * 3, completions=answers, completion_ids=[[1]] * 3, trainer_state=None, **columns)
             for fn in REWARD_FUNCTIONS]
    for i, answer in enumerate(answers):
        total = weights.f1 * terms[0][i] + weights.format * terms[1][i] + weights.grounding * terms[2][i]
        assert total == pytest.approx(extraction_reward(answer, RECORD, weights))
    conversational = [[{"role": "assistant", "content": a}] for a in answers]
    assert REWARD_FUNCTIONS[0](completions=conversational, **columns) == terms[0]
