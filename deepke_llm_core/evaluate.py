"""Score prediction records (``deepke-llm evaluate``), compatible with upstream's ``eval_func.py``.

Semantics (SPEC.md §2): the chunks of one text are grouped by ``source + id`` and their predictions
concatenated; tuples are matched exactly and case-sensitively as multisets (``set`` mode de-duplicates each
instance first); P, R and F1 are micro-averaged on a 0–100 scale and rounded to 2 decimals. A chunk whose
output is not a JSON object counts one parse error (``错误数``) and contributes nothing; it never raises.

Differences from upstream, all deliberate: F1 is computed from the unrounded P and R; relation objects are
read with ``subject``/``object`` as well as ``head``/``tail`` (``rel_keys="head_tail"`` reproduces upstream);
SPO, EET and KG are scored (upstream crashed or always gave 0); EEA's event level compares real triggers;
each result carries a per-type breakdown; ``lenient`` optionally recovers JSON wrapped in fences or prose.

>>> from deepke_llm_core.evaluate import prf
>>> prf(tp=2, pred=3, gold=4)
{'P': 66.67, 'R': 50.0, 'F1': 57.14}
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import DataError, iter_jsonl
from .tasks import Task, get_task

__all__ = ["EvalConfig", "evaluate_file", "evaluate_records", "reference_predictions", "parse_json_output", "prf",
           "instruction_input",
           "default_out_path"]


@dataclass
class EvalConfig:
    """The ``deepke-llm evaluate`` flags."""

    path1: str = field(metadata={"help": "prediction records: converted test records plus `output`"})
    task: str | None = field(default=None, metadata={"help": "NER, RE, SPO, EE, EET, EEA or KG; default: the records' task field"})
    sort_by: str = field(default="", metadata={"help": "also score per value of this field, e.g. source"})
    match_mode: str = field(default="normal", metadata={"help": "set: de-duplicate each instance first",
                                                        "choices": ["normal", "set"]})
    out_path: str | None = field(default=None, metadata={"help": "metrics JSON; default: <dir of path1>/output_msg/<name of path1>"})
    lenient: bool = field(default=False, metadata={"help": "recover JSON wrapped in code fences or prose (off: comparable numbers)"})
    rel_keys: str = field(default="any", metadata={"help": "relation object keys to read; head_tail reproduces upstream DeepKE's scorer",
                                                   "choices": ["any", "subject_object", "head_tail"]})
    grounded_only: bool = field(default=False, metadata={"help": "drop predicted tuples whose strings are not in the input text"})
    errors: bool = field(default=False, metadata={"help": "classify every false positive and negative (errors.py): "
                                                           "hallucinated, boundary, type confusion, spurious, missed, ..."})
    language: str | None = field(default=None, metadata={"help": "accepted for upstream's scripts; unused there too"})

    def __post_init__(self) -> None:
        self.task = self.task.upper() if isinstance(self.task, str) else self.task


def prf(tp: int, pred: int, gold: int) -> dict[str, float]:
    """Precision, recall and F1 in percent; F1 from the unrounded P and R, then everything rounded."""
    p = tp / pred if pred else 0.0
    r = tp / gold if gold else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"P": round(p * 100, 2), "R": round(r * 100, 2), "F1": round(f1 * 100, 2)}


def _strip_fences(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped


def parse_json_output(text: Any, lenient: bool = False) -> dict | None:
    """The model output as a JSON object, or ``None`` when it is not one (a parse error).

    Strict mode is upstream's ``json.loads``. Lenient mode also accepts code fences, prose around the
    object, and near-JSON that json-repair can mend (trailing commas, single quotes, a missing bracket).
    """
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
        if lenient:
            body = _strip_fences(text)
            start, end = body.find("{"), body.rfind("}")
            candidate = body[start:end + 1] if start != -1 and end > start else body[start:] if start != -1 else ""
            try:
                value = json.loads(candidate)
            except json.JSONDecodeError:
                import json_repair  # maintained lenient parser; hand-rolled repair would miss cases

                value = json_repair.loads(candidate) if candidate else None
    return value if isinstance(value, dict) else None


def instruction_input(record: dict, fallback: str = "") -> str:
    """The text an IEPile instruction record asks about (its ``input``); ``fallback`` when it is not IEPile JSON."""
    try:
        inner = json.loads(record.get("instruction", ""))
    except json.JSONDecodeError:
        return fallback
    return inner.get("input", "") if isinstance(inner, dict) else ""


class _Instance:
    """The chunks of one text: gold tuples once, predictions concatenated, parse errors counted."""

    __slots__ = ("group", "gold", "pred", "errors", "text")

    def __init__(self, group: str, gold: list, text: str = ""):
        self.group = group
        self.gold = gold
        self.text = text  # the input, kept only when errors are classified
        self.pred: list = []
        self.errors = 0


def _levels(task: Task, tuples: list, dedupe: bool) -> dict[str, list[tuple[str, Any]]]:
    if dedupe:
        tuples = list(dict.fromkeys(tuples))
    return task.score_levels(tuples)


def _score(task: Task, instances: list[_Instance], match_mode: str, errors: bool = False) -> dict[str, Any]:
    """Upstream's result keys (总样本数, 错误数, P/R/F1 or event_/argument_ prefixed) plus ``per_type``."""
    dedupe = match_mode == "set"
    totals: dict[str, Counter] = {}
    per_type: dict[str, dict[str, Counter]] = {}
    for instance in instances:
        preds = _levels(task, instance.pred, dedupe)
        golds = _levels(task, instance.gold, dedupe)
        for prefix in preds.keys() | golds.keys():
            pred_items = Counter(preds.get(prefix, []))
            gold_items = Counter(golds.get(prefix, []))
            total = totals.setdefault(prefix, Counter())
            types = per_type.setdefault(prefix, {})
            for (kind, item), n in pred_items.items():
                hit = min(n, gold_items.get((kind, item), 0))
                total["pred"] += n
                total["tp"] += hit
                bucket = types.setdefault(kind, Counter())
                bucket["pred"] += n
                bucket["tp"] += hit
            for (kind, _), n in gold_items.items():
                total["gold"] += n
                types.setdefault(kind, Counter())["gold"] += n
    result: dict[str, Any] = {"总样本数": len(instances), "错误数": sum(i.errors for i in instances)}
    prefixes = [p for p in task.score_levels([]).keys()]
    breakdown: dict[str, Any] = {}
    for prefix in prefixes:
        counts = totals.get(prefix, Counter())
        for key, value in prf(counts["tp"], counts["pred"], counts["gold"]).items():
            result[prefix + key] = value
        for kind in sorted(per_type.get(prefix, {})):
            c = per_type[prefix][kind]
            entry = breakdown.setdefault(kind, {})
            for key, value in prf(c["tp"], c["pred"], c["gold"]).items():
                entry[prefix + key] = value
            entry.update({prefix + "tp": c["tp"], prefix + "pred": c["pred"], prefix + "gold": c["gold"]})
    result["per_type"] = breakdown
    if errors:
        from .errors import ErrorCounter

        counter = ErrorCounter(task, dedupe)
        for instance in instances:
            counter.add(instance.text, instance.gold, instance.pred)
        counter.attach(result)
    return result


def _numbered(records) -> Iterator[tuple[int | None, Any]]:
    for n, item in enumerate(records, start=1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
            yield item
        else:
            yield n, item


def evaluate_records(records, task: str | Task | None = None, *, sort_by: str = "", match_mode: str = "normal",
                     lenient: bool = False, rel_keys: str = "any", grounded_only: bool = False,
                     errors: bool = False, path: str | None = None) -> dict[str, Any]:
    """Score prediction records (dicts, or ``(line_number, dict)`` pairs as ``iter_jsonl`` yields them).

    See the module docstring for the rules; ``errors`` adds the error categories of ``errors.py``. Returns ``{"total": {...}, <group>: {...}, ...}``, groups sorted,
    when ``sort_by`` is given.
    """
    if match_mode not in ("normal", "set"):
        raise ValueError(f"match_mode must be 'normal' or 'set', got {match_mode!r}")
    if rel_keys not in ("any", "subject_object", "head_tail"):
        raise ValueError(f"rel_keys must be any, subject_object or head_tail, got {rel_keys!r}")
    task_obj = get_task(task) if isinstance(task, str) else task
    instances: dict[str, _Instance] = {}
    for number, record in _numbered(records):
        if not isinstance(record, dict):
            raise DataError(path, number, None, "expected a JSON object")
        if task_obj is None:
            if not isinstance(record.get("task"), str):
                raise DataError(path, number, "task", "no task field; pass --task")
            task_obj = get_task(record["task"])
        for key in ("id", "label", "output"):
            if key not in record:
                hint = " (run deepke-llm infer on the converted test file first)" if key == "output" else ""
                raise DataError(path, number, key, f"missing{hint}")
        key = str(record.get("source", "None")) + str(record["id"])
        instance = instances.get(key)
        if instance is None:
            try:
                label = json.loads(record["label"]) if isinstance(record["label"], str) else record["label"]
            except json.JSONDecodeError as exc:
                raise DataError(path, number, "label", f"not valid JSON: {exc.msg}") from None
            if not isinstance(label, list):
                raise DataError(path, number, "label", "expected a JSON list of annotations")
            group = ""
            if sort_by:
                value = record.get(sort_by)
                if value is None and sort_by == "input":
                    value = json.loads(record["instruction"]).get("input")
                group = str(value)
            text = instruction_input(record) if errors else ""
            instance = instances[key] = _Instance(group, task_obj.gold_tuples(label), text)
        parsed = parse_json_output(record["output"], lenient)
        if parsed is None:
            instance.errors += 1
            continue
        predicted = task_obj.parse_output(parsed, rel_keys)
        if grounded_only:  # drop tuples with a string that is not in the input text (hallucinated spans)
            text = instruction_input(record)
            predicted = [e for e in predicted if all(m.text in text for m in e.mentions())]
        instance.pred.extend(predicted)
    if task_obj is None:
        raise DataError(path, None, None, "no prediction records to score")
    ordered = list(instances.values())
    result = {"total": _score(task_obj, ordered, match_mode, errors)}
    if sort_by:
        for group in sorted({i.group for i in ordered}):
            result[group] = _score(task_obj, [i for i in ordered if i.group == group], match_mode, errors)
    return result


def reference_predictions(train_path: str, test_path: str) -> list[dict]:
    """Test records carrying the reference answers rendered by the converter (an oracle, F1 100 by construction).

    ``train_path`` and ``test_path`` are the same raw file converted with ``--split train`` (``--neg_schema 1``)
    and ``--split test``; each training chunk becomes one prediction record of the test record with the same
    text. Useful to check a pipeline end to end, and as a starting point for error-analysis examples.
    """
    import hashlib

    tests: dict[str, dict] = {}
    for _, record in iter_jsonl(test_path):
        tests.setdefault(record["id"], record)
    predictions = []
    for number, record in iter_jsonl(train_path):
        text = json.loads(record["instruction"])["input"]
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if key not in tests:
            raise DataError(train_path, number, "instruction", "its text is not in the test file")
        predictions.append({**tests[key], "output": record["output"]})
    return predictions


def default_out_path(path1: str) -> str:
    """Upstream's location: ``<dir of path1>/output_msg/<name of path1>``."""
    path = Path(path1)
    return str(path.parent / "output_msg" / path.name)


def evaluate_file(config: EvalConfig) -> tuple[dict[str, Any], str]:
    """Score ``config.path1`` and write the metrics JSON; returns ``(result, out_path)``."""
    if not os.path.exists(config.path1):
        raise FileNotFoundError(f"{config.path1}: prediction file not found")
    result = evaluate_records(
        iter_jsonl(config.path1), config.task, sort_by=config.sort_by, match_mode=config.match_mode,
        lenient=config.lenient, rel_keys=config.rel_keys, grounded_only=config.grounded_only, errors=config.errors,
        path=config.path1,
    )
    out_path = config.out_path or default_out_path(config.path1)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False, indent=4)
    return result, out_path
