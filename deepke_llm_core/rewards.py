"""The extraction reward: how good one model answer is, as a number reinforcement learning can climb.

Three terms, each computed from one answer and its record, summed with a weight each:

* **f1** in [0, 1]: the task F1 of the answer's tuples against the record's gold, matched exactly as
  ``deepke-llm evaluate`` matches them (multisets, case-sensitive, every scoring level of the task pooled: EE
  adds its event and argument tuples). An answer with nothing to find that finds nothing scores 1.
* **format** in {0, -0.5, -1}: 0 for a JSON object whose keys are exactly the instruction's schema items,
  -0.5 for another JSON object, -1 for an answer that is not a JSON object (a parse error in ``evaluate``).
* **grounding** in [-1, 0]: minus the fraction of distinct extracted strings that do not occur in the input text
  (the check ``deepke-llm infer --ground`` and ``evaluate --grounded_only`` make), leaving out strings of the gold
  itself (a normalised value the annotators wrote is right, not invented); -1 for an answer that is not a JSON
  object (none of its claims can be checked).

``reward = f1_weight * f1 + format_weight * format + grounding_weight * grounding``. Format and grounding are
penalties, so a perfect answer earns exactly ``f1_weight`` (1 by default) whatever the other weights are, an
answer that extracts nothing where there was something earns 0, and an answer that is not JSON earns
``-(format_weight + grounding_weight)``, below every JSON answer (the worst JSON answer earns
``-format_weight / 2 - grounding_weight``).

The gold of a record is its ``label`` (a test record's annotation list) when it has one, else its ``output``
(the answer a converted training record carries). ``match_counts`` is the one place that turns an answer and a
gold into counts; it sits on the task registry, so every task the evaluator scores is a reward here too.

>>> record = {"task": "NER", "output": '{"person": ["Tom"], "location": []}',
...           "instruction": '{"instruction": "...", "schema": ["person", "location"], "input": "Tom is here."}'}
>>> extraction_reward('{"person": ["Tom"], "location": []}', record)
1.0
>>> extraction_reward('{"person": [], "location": []}', record)
0.0
>>> reward_terms('{"person": ["Tom", "Bob"], "location": []}', record)
RewardTerms(f1=0.6666666666666666, format=0.0, grounding=-0.5)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .evaluate import parse_json_output
from .records import instruction_record
from .tasks import Task, get_task

__all__ = ["RewardWeights", "RewardTerms", "match_counts", "reward_terms", "extraction_reward",
           "f1_reward", "format_reward", "grounding_reward", "REWARD_FUNCTIONS"]


@dataclass(frozen=True)
class RewardWeights:
    """The weight of each term; ``f1`` is also the reward of a perfect answer."""

    f1: float = 1.0
    format: float = 0.2
    grounding: float = 0.5


@dataclass(frozen=True)
class RewardTerms:
    """The three terms of one answer, unweighted (see the module docstring for their ranges)."""

    f1: float
    format: float
    grounding: float

    def total(self, weights: RewardWeights = RewardWeights()) -> float:
        """The weighted sum: the reward."""
        return weights.f1 * self.f1 + weights.format * self.format + weights.grounding * self.grounding


def match_counts(task: Task, answer: dict, gold: Any, rel_keys: str = "any") -> tuple[int, int, int]:
    """``(tp, pred, gold)`` of one parsed answer against its gold, counted as ``evaluate`` counts a record.

    ``gold`` is a label list (``task.gold_tuples``) or an answer-shaped dict (``task.parse_output``). This is the
    only function that knows how tasks turn answers into comparable tuples; when tasks return typed extractions,
    only this changes.
    """
    predicted = task.parse_output(answer, rel_keys)
    golds = task.gold_tuples(gold) if isinstance(gold, list) else task.parse_output(gold, rel_keys)
    pred_levels, gold_levels = task.score_levels(predicted), task.score_levels(golds)
    tp = n_pred = n_gold = 0
    for level in pred_levels.keys() | gold_levels.keys():
        p, g = Counter(pred_levels.get(level, [])), Counter(gold_levels.get(level, []))
        tp += sum((p & g).values())
        n_pred += sum(p.values())
        n_gold += sum(g.values())
    return tp, n_pred, n_gold


def _f1(tp: int, pred: int, gold: int) -> float:
    """F1 in [0, 1]; nothing predicted where nothing was to be found is perfect."""
    return 1.0 if pred + gold == 0 else 2 * tp / (pred + gold)


def _gold_of(record: dict) -> Any:
    """The record's gold: its ``label`` when present (test records), else its ``output`` (training records)."""
    gold = record["label"] if "label" in record else record.get("output")
    if isinstance(gold, str):
        try:
            gold = json.loads(gold)
        except json.JSONDecodeError:
            raise ValueError(f"the record's gold ({'label' if 'label' in record else 'output'}) is not JSON") from None
    if not isinstance(gold, (list, dict)):
        raise ValueError("a record needs a `label` list or an `output` JSON object to be rewarded against")
    return gold


def _schema_keys(task: Task, instruction: Any) -> set[str] | None:
    """The keys a correct answer has (the instruction's schema items); ``None`` when the instruction has no schema."""
    if instruction is None or not instruction.is_iepile:
        return None
    return set(task.output_schema(instruction.schema)["properties"])


def _strings(extractions: list) -> list[str]:
    """The distinct extracted strings of typed extractions (a KG entity named as a key included)."""
    return list(dict.fromkeys(m.text for e in extractions for m in e.mentions()
                              if isinstance(m.text, str) and m.text not in ("", "NAN")))


def reward_terms(answer: str | dict, record: dict, rel_keys: str = "any") -> RewardTerms:
    """The three reward terms of one answer to one instruction record (``task``, ``instruction`` and a gold)."""
    task = get_task(record["task"])
    parsed = parse_json_output(answer)
    if parsed is None:
        return RewardTerms(f1=0.0, format=-1.0, grounding=-1.0)
    try:
        instruction = instruction_record(record)
    except ValueError:
        instruction = None
    keys = _schema_keys(task, instruction)
    format_term = 0.0 if keys is None or set(parsed) == keys else -0.5
    gold = _gold_of(record)
    strings = _strings(task.parse_output(parsed, rel_keys))
    allowed = set(_strings(task.gold_tuples(gold) if isinstance(gold, list) else task.parse_output(gold, rel_keys)))
    text = instruction.input if instruction is not None and instruction.is_iepile else record.get("instruction", "")
    missing = sum(1 for s in strings if s not in text and s not in allowed)
    grounding = -missing / len(strings) if strings else 0.0
    return RewardTerms(f1=_f1(*match_counts(task, parsed, gold, rel_keys)), format=format_term, grounding=grounding)


def extraction_reward(answer: str | dict, record: dict, weights: RewardWeights = RewardWeights(),
                      rel_keys: str = "any") -> float:
    """The reward of one answer: the weighted sum of its terms (1 for a perfect answer with the default weights)."""
    return reward_terms(answer, record, rel_keys).total(weights)


# ---- TRL reward functions ------------------------------------------------------------------------------------
# GRPOTrainer calls each with the batch's completions and the dataset's other columns as lists, sums them with its
# ``reward_weights`` and logs each one's mean per step as ``rewards/<function name>/mean``: one function per term
# is what puts every term in training_history.json. Their weighted sum is exactly ``extraction_reward``.


def _records(completions: Sequence[Any], task: Sequence[str], instruction: Sequence[str], output: Sequence[Any],
             label: Sequence[Any] | None) -> list[tuple[str, dict]]:
    rows = []
    for i, completion in enumerate(completions):
        text = completion if isinstance(completion, str) else completion[-1]["content"]  # conversational form
        record = {"task": task[i], "instruction": instruction[i], "output": output[i]}
        if label is not None and label[i] is not None:
            record["label"] = label[i]
        rows.append((text, record))
    return rows


def f1_reward(completions: Sequence[Any], task: Sequence[str], instruction: Sequence[str], output: Sequence[Any],
              label: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """The f1 term of every completion (GRPOTrainer's reward-function signature)."""
    return [reward_terms(text, record).f1 for text, record in _records(completions, task, instruction, output, label)]


def format_reward(completions: Sequence[Any], task: Sequence[str], instruction: Sequence[str], output: Sequence[Any],
                  label: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """The format term of every completion."""
    return [reward_terms(text, record).format for text, record in _records(completions, task, instruction, output, label)]


def grounding_reward(completions: Sequence[Any], task: Sequence[str], instruction: Sequence[str], output: Sequence[Any],
                     label: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """The grounding term of every completion."""
    return [reward_terms(text, record).grounding
            for text, record in _records(completions, task, instruction, output, label)]


REWARD_FUNCTIONS = (f1_reward, format_reward, grounding_reward)  # in the order of RewardWeights' fields
