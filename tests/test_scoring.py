"""The scorer's cheap items (``Task.score_answer``/``score_gold``) against the typed extractions they stand for.

``evaluate`` counts ``(type, key)`` pairs made straight from the JSON instead of typed extractions (ten times
cheaper to build). That is only right if two keys are equal exactly when the two extractions are: these tests
match every answer against every answer and every gold label of its task, both ways, and compare whole
``evaluate`` results with and without typed extractions (``errors=True`` keeps them).
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import pytest

from deepke_llm_core.evaluate import evaluate_records
from deepke_llm_core.tasks import TASKS

# Answers (as parsed) and gold labels per task, with the malformed shapes a model produces mixed in.
ANSWERS = {
    "NER": [{"person": ["Tom", "Tom", 5, None], "location": "Paris", "organization": ["Paris", "paris"]},
            {"person": ["tom", "Tom"], "location": ["Paris", ""]}, {"person": [], "x": {"y": 1}}, {}],
    "EET": [{"裁员": ["裁员", "裁员", 3], "融资": "x"}, {"裁员": ["裁"], "融资": ["融资"]}, {}],
    "RE": [{"founder": [{"head": "A", "tail": "B"}, {"subject": "A", "object": "B"}, {"head": 1, "tail": "B"}, "s"],
            "located in": [{"head": "B", "tail": "A"}], "x": {}},
           {"founder": [{"subject": "A", "object": "B", "head": "Z"}, {"tail": "B"}], "located in": []}, {}],
    "SPO": [{"作者": [{"subject": "A", "object": "B"}, {"subject": "A", "object": "B"}, {"head": "A"}]},
            {"作者": [{"head": "A", "tail": "B"}], "出版社": [{"subject": "B", "object": "C"}]}],
    "EE": [{"裁员": [{"trigger": "裁员", "arguments": {"公司": "A", "人数": ["3", "4"]}}, 5]},
           {"裁员": [{"trigger": "裁", "arguments": {"公司": "A"}}]}],
    "EEA": [{"裁员": {"公司": "A", "人数": "3"}}, {"裁员": [{"arguments": {"公司": "A"}}]}],
    "KG": [{"人物": {"A": {"父母": ["B"], "别名": "C", "职业": "无"}}}, {"人物": {"A": {"父母": "B"}}, "x": 1}],
}
LABELS = {
    "NER": [[{"entity": "Tom", "entity_type": "person"}, {"entity": "Paris", "entity_type": "location"},
             {"entity": "Paris"}, "junk"], [{"entity": "tom", "entity_type": "person"}]],
    "EET": [[{"event_type": "裁员", "event_trigger": "裁员", "arguments": []}, {"event_trigger": "融资"}]],
    "RE": [[{"head": "A", "relation": "founder", "tail": "B"}, {"head": "B", "relation": "located in", "tail": "A"},
            {"relation": "founder", "tail": "B"}]],
    "SPO": [[{"head": "A", "head_type": "人物", "relation": "作者", "tail": "B", "tail_type": "书"},
             {"head": "A", "relation": "作者", "tail": "B"}]],
    "EE": [[{"event_type": "裁员", "event_trigger": "裁员", "arguments": [{"argument": "A", "role": "公司"}]}]],
    "EEA": [[{"event_type": "裁员", "arguments": [{"argument": "A", "role": "公司"}, {"argument": "3", "role": "人数"}]}]],
    "KG": [[{"head": "A", "relation": "父母", "tail": "B", "head_type": "人物"}]],
}


def _matches(a: dict, b: dict) -> dict:
    """Per level: true positives of ``a`` against ``b`` and the types on both sides (what the scorer counts)."""
    out = {}
    for prefix in a.keys() | b.keys():
        pa, pb = a.get(prefix, []), b.get(prefix, [])
        out[prefix] = (sum((Counter(pa) & Counter(pb)).values()), sum((Counter(set(pa)) & Counter(set(pb))).values()),
                       Counter(t for t, _ in pa), Counter(t for t, _ in pb))
    return out


def test_every_task_is_covered():
    assert set(ANSWERS) == set(LABELS) == set(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_score_items_match_exactly_when_typed_extractions_match(name):
    task = TASKS[name]
    cheap = [task.score_answer(a) for a in ANSWERS[name]] + [task.score_gold(g) for g in LABELS[name]]
    typed = ([task.score_levels(task.parse_output(a)) for a in ANSWERS[name]]
             + [task.score_levels(task.gold_tuples(g)) for g in LABELS[name]])
    assert any(sum(map(len, levels.values())) for levels in cheap)  # the cases are not all empty
    for i, j in itertools.product(range(len(cheap)), repeat=2):
        assert _matches(cheap[i], cheap[j]) == _matches(typed[i], typed[j]), (name, i, j)


def _predictions(task: str, seed: int) -> list[dict]:
    """Chunked prediction records whose outputs and labels are drawn from the cases above."""
    rng = random.Random(seed)
    records = []
    for i in range(30):
        label = rng.choice(LABELS[task])
        for chunk in range(rng.randint(1, 3)):
            instruction = json.dumps({"instruction": "...", "schema": [f"s{chunk}"], "input": f"text {i}"})
            output = json.dumps(rng.choice(ANSWERS[task]), ensure_ascii=False) if rng.random() < 0.9 else "{broken"
            records.append({"id": f"id{i}", "source": f"s{i % 3}", "task": task, "instruction": instruction,
                            "label": json.dumps(label, ensure_ascii=False), "output": output})
    return records


def _without_errors(result: dict) -> dict:
    strip = lambda entry: {k: (v if k != "per_type" else {t: {kk: vv for kk, vv in e.items() if kk != "errors"}
                                                          for t, e in v.items()}) for k, v in entry.items() if k != "errors"}
    return {group: strip(entry) for group, entry in result.items()}


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("match_mode", ["normal", "set"])
def test_evaluate_gives_the_same_numbers_with_and_without_typed_extractions(name, match_mode):
    records = _predictions(name, seed=len(name))
    cheap = evaluate_records(records, sort_by="source", match_mode=match_mode)
    typed = evaluate_records(records, sort_by="source", match_mode=match_mode, errors=True)
    assert "errors" in typed["total"] and "errors" not in cheap["total"]
    assert cheap == _without_errors(typed)
    assert cheap["total"]["总样本数"] == 30


def test_evaluate_starts_without_importing_transformers(tmp_path):
    """Argument parsing loads transformers' parser module alone: importing the package takes most of a second."""
    import subprocess
    import sys

    path = tmp_path / "p.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in _predictions("NER", seed=1)), encoding="utf-8")
    code = ("import sys; from deepke_llm_core.cli import main; "
            f"code = main(['evaluate', '--path1', {str(path)!r}, '--out_path', {str(tmp_path / 'm.json')!r}]); "
            "print(code, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr
    assert json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))["total"]["总样本数"] == 30
