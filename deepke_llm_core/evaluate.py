"""Score prediction records (``deepke-llm evaluate``), compatible with upstream's ``eval_func.py``.

Semantics (SPEC.md §2): the chunks of one text are grouped by ``source + id`` and their predictions
concatenated; tuples are matched exactly and case-sensitively as multisets (``set`` mode de-duplicates each
scoring level of an instance first, as upstream does); P, R and F1 are micro-averaged on a 0–100 scale and
rounded to 2 decimals. A chunk whose output is not a JSON object counts one parse error (``错误数``) and
contributes nothing; it never raises (not for a 1,000-deep nest or a 5,000-digit number either).

Streaming: a converted file keeps the chunks of one text adjacent, so an instance is scored as soon as the next
text starts and then forgotten; memory stays flat in the file size (a set of small key hashes aside). Records of
one text that are *not* adjacent are still scored together: the first pass notices a text coming back, and a
second pass holds exactly those texts' records until the end (about twice the time; ``bench/evaluate.py``).

Differences from upstream, all deliberate: F1 is computed from the unrounded P and R; relation objects are
read with ``subject``/``object`` as well as ``head``/``tail`` (``rel_keys="head_tail"`` reproduces upstream);
SPO, EET and KG are scored (upstream crashed or always gave 0); EEA's event level compares real triggers;
each result carries a per-type breakdown; ``lenient`` optionally recovers JSON wrapped in fences or prose;
identical texts (same ``id``) are separate instances: a chunk whose instruction repeats one already seen for
that text starts a new one (upstream merged them, so three perfect duplicates scored F1 50); a file that mixes
tasks is refused (one run reports one task's metrics, whose keys differ by task).

>>> from deepke_llm_core.evaluate import prf
>>> prf(tp=2, pred=3, gold=4)
{'P': 66.67, 'R': 50.0, 'F1': 57.14}
"""

from __future__ import annotations

import json
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson  # a small compiled parser, 3-4x faster than json here; imported eagerly as the hot loop needs it

from .io import DataError, iter_jsonl
from .tasks import TASKS, Task, get_task

__all__ = ["EvalConfig", "evaluate_file", "evaluate_records", "reference_predictions", "parse_json_output", "prf",
           "instruction_input",
           "default_out_path"]


@dataclass
class EvalConfig:
    """The ``deepke-llm evaluate`` flags."""

    path1: str
    task: str | None = None
    sort_by: str = ""
    match_mode: str = "normal"
    out_path: str | None = None
    lenient: bool = False
    rel_keys: str = "any"
    grounded_only: bool = False


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


def _loads(text: str | bytes) -> Any:
    """``json.loads`` semantics at orjson's speed: orjson first (3-4x faster on these records), ``json`` for
    what orjson refuses but upstream's ``json.loads`` accepts (``NaN``, lone surrogates). Raises ValueError or
    RecursionError (a 5,000-digit integer, a 1,000-deep nest) like ``json.loads``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def parse_json_output(text: Any, lenient: bool = False) -> dict | None:
    """The model output as a JSON object, or ``None`` when it is not one (a parse error); never raises.

    Strict mode is upstream's ``json.loads``. Lenient mode also accepts code fences, prose around the
    object, and near-JSON that json-repair can mend (trailing commas, single quotes, a missing bracket).
    """
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        return None
    try:
        value = _loads(text)
    except (ValueError, RecursionError):
        value = None
        if lenient:
            value = _lenient(text)
    return value if isinstance(value, dict) else None


def _lenient(text: str) -> Any:
    body = _strip_fences(text)
    start, end = body.find("{"), body.rfind("}")
    candidate = body[start:end + 1] if start != -1 and end > start else body[start:] if start != -1 else ""
    try:
        return _loads(candidate)
    except (ValueError, RecursionError):
        pass
    if not candidate:
        return None
    import json_repair  # maintained lenient parser; hand-rolled repair would miss cases

    try:
        return json_repair.loads(candidate)
    except (ValueError, RecursionError):
        return None


def instruction_input(record: dict, fallback: str = "") -> str:
    """The text an IEPile instruction record asks about (its ``input``); ``fallback`` when it is not IEPile JSON."""
    try:
        inner = json.loads(record.get("instruction", ""))
    except (ValueError, RecursionError, TypeError):
        return fallback
    return inner.get("input", "") if isinstance(inner, dict) else ""


def _strings(t: Any) -> list[str]:
    """The extracted strings inside a predicted tuple (types and relation names are schema items, not spans)."""
    if len(t) == 3 and isinstance(t[2], tuple):  # event: (type, trigger, ((argument, role), ...))
        return [s for s in [t[1], *(a for a, _ in t[2])] if s]
    if len(t) == 2:  # (span, type)
        return [t[0]]
    return [t[0], t[2]]  # (head, relation, tail) or (entity, attribute, value)


class _Instance:
    """The chunks of one text: gold tuples once, predictions concatenated, parse errors counted.

    ``seen`` holds the instructions of its chunks: a chunk asking the same again belongs to a duplicate text.
    """

    __slots__ = ("group", "gold", "pred", "errors", "seen")

    def __init__(self, group: str, gold: list):
        self.group = group
        self.gold = gold
        self.pred: list = []
        self.errors = 0
        self.seen: set = set()


class _Tally:
    """Micro-averaged counts of one group (the total, or one ``sort_by`` value): per level, the types of the
    true positives, of the predictions and of the gold items (Counters fed whole lists: counting runs in C)."""

    __slots__ = ("instances", "errors", "counts")

    def __init__(self):
        self.instances = 0
        self.errors = 0
        self.counts: dict[str, tuple[Counter, Counter, Counter]] = {}  # prefix -> (tp, pred, gold) by type

    def add(self, levels: list[tuple[str, list, list, list]], errors: int) -> None:
        self.instances += 1
        self.errors += errors
        for prefix, tp, pred, gold in levels:
            counters = self.counts.get(prefix)
            if counters is None:
                counters = self.counts[prefix] = (Counter(), Counter(), Counter())
            counters[0].update(tp)
            counters[1].update(pred)
            counters[2].update(gold)

    def result(self, prefixes: list[str]) -> dict[str, Any]:
        """Upstream's result keys (总样本数, 错误数, P/R/F1 or event_/argument_ prefixed) plus ``per_type``."""
        result: dict[str, Any] = {"总样本数": self.instances, "错误数": self.errors}
        breakdown: dict[str, Any] = {}
        empty: tuple[Counter, Counter, Counter] = (Counter(), Counter(), Counter())
        for prefix in prefixes:
            tp, pred, gold = self.counts.get(prefix, empty)
            for key, value in prf(sum(tp.values()), sum(pred.values()), sum(gold.values())).items():
                result[prefix + key] = value
            for kind in sorted(pred.keys() | gold.keys()):
                entry = breakdown.setdefault(kind, {})
                for key, value in prf(tp[kind], pred[kind], gold[kind]).items():
                    entry[prefix + key] = value
                entry.update({prefix + "tp": tp[kind], prefix + "pred": pred[kind], prefix + "gold": gold[kind]})
        result["per_type"] = breakdown
        return result


def _instance_counts(task: Task, instance: _Instance, dedupe: bool) -> list[tuple[str, list, list, list]]:
    """``[(prefix, tp types, pred types, gold types)]`` of one instance: the type of every true positive,
    prediction and gold item, per level; ``dedupe`` (set mode) de-duplicates each level, as upstream does."""
    preds = task.score_levels(instance.pred)
    golds = task.score_levels(instance.gold)
    levels = []
    for prefix in golds.keys() | preds.keys():
        pred_items = preds.get(prefix, [])
        gold_items = golds.get(prefix, [])
        if dedupe:  # an item's type is a function of the item, so de-duplicating (type, item) pairs is upstream's set()
            pred_items, gold_items = list(dict.fromkeys(pred_items)), list(dict.fromkeys(gold_items))
        tp: list[str] = []
        if pred_items and gold_items:
            gold_counter = Counter(gold_items)
            for item, n in Counter(pred_items).items():
                hit = gold_counter.get(item)
                if hit:
                    tp += [item[0]] * min(n, hit)
        levels.append((prefix, tp, [kind for kind, _ in pred_items], [kind for kind, _ in gold_items]))
    return levels


@dataclass
class _Options:
    task: Task | None
    sort_by: str
    dedupe: bool
    lenient: bool
    rel_keys: str
    grounded_only: bool
    path: str | None


class _Pass:
    """One pass over the records: instances scored as their text's run of records ends.

    Without ``held``, the hash of each run's key is appended to ``runs`` (8 bytes per text, the only thing that
    grows with the file; see ``_repeated``); a hash found twice there at the end is a text whose records are
    scattered, and the caller makes a second pass with ``held`` = those hashes, whose instances are kept to the end.
    """

    def __init__(self, options: _Options, held: set[int] | None):
        self.o = options
        self.held = held
        self.runs = [array("q") for _ in range(64)]
        self.recent: set[int] = set()  # the last few thousand run keys: a scattered file shows itself early
        self.scoring = True
        self.tallies: dict[str | None, _Tally] = {None: _Tally()}
        self.run_key: str | None = None
        self.run: list[_Instance] = []
        self.kept: dict[str, list[_Instance]] = {}
        self.task_line: int | None = None

    def _score(self, instances: list[_Instance]) -> None:
        task, dedupe, sort_by = self.o.task, self.o.dedupe, self.o.sort_by
        for instance in instances:
            counts = _instance_counts(task, instance, dedupe)
            self.tallies[None].add(counts, instance.errors)
            if sort_by:
                tally = self.tallies.get(instance.group)
                if tally is None:
                    tally = self.tallies[instance.group] = _Tally()
                tally.add(counts, instance.errors)

    def _check_task(self, number: int | None, record: dict) -> None:
        given = record.get("task")
        if self.o.task is None:
            if not isinstance(given, str):
                raise DataError(self.o.path, number, "task", "no task field; pass --task")
            try:
                self.o.task = get_task(given)
            except ValueError as exc:
                raise DataError(self.o.path, number, "task", str(exc)) from None
            self.task_line = number
            return
        if isinstance(given, str) and given.upper() in TASKS and given.upper() != self.o.task.name:
            if self.task_line is None:
                raise DataError(self.o.path, number, "task", f"{given!r}, but --task {self.o.task.name} was given: "
                                "one run scores one task; drop --task to use the records' own, or pass a file of one task")
            raise DataError(self.o.path, number, "task", f"{given!r}, but line {self.task_line} is "
                            f"{self.o.task.name!r}: one run scores one task; split the file by its task field, "
                            "or pass --task to score every record as one task")

    def consume(self, pairs: Iterable[tuple[int | None, Any]]) -> None:
        """Feed ``(line, record)`` pairs. One loop with local names: it runs once per line of a large file."""
        o = self.o
        lenient, rel_keys, grounded_only = o.lenient, o.rel_keys, o.grounded_only
        held, runs = self.held, self.runs
        fast_loads, slow_error = orjson.loads, orjson.JSONDecodeError
        last_task: Any = self  # no record's task field is this object: the first record is always checked
        task = o.task
        for number, record in pairs:
            if type(record) is not dict:
                raise DataError(o.path, number, None, "expected a JSON object")
            given = record.get("task")
            if given != last_task or task is None:
                self._check_task(number, record)
                last_task, task = given, o.task
            if "id" not in record or "label" not in record or "output" not in record:
                self._missing(number, record)
            source, rid = record.get("source", "None"), record["id"]
            key = (source if type(source) is str else str(source)) + (rid if type(rid) is str else str(rid))
            if key != self.run_key:
                self._end_run()
                self.run_key = key
                h = hash(key)
                if held is None:
                    runs[h & 63].append(h)
                    self.run = []
                    if h in self.recent:  # certainly scattered: this pass's numbers will be discarded
                        self.scoring = False
                    self.recent.add(h)
                    if len(self.recent) > 4096:
                        self.recent.clear()
                elif h in held:
                    self.run = self.kept.setdefault(key, [])
                else:
                    self.run = []
            if not self.scoring:
                continue  # only the run keys matter now
            instruction = record.get("instruction")
            instance = None
            known = type(instruction) is str  # without one, chunks are never taken for a duplicate text
            for candidate in self.run:
                if not known or instruction not in candidate.seen:
                    instance = candidate
                    break
            if instance is None:
                instance = self._new_instance(number, record)
                self.run.append(instance)
            if known:
                instance.seen.add(instruction)
            output = record["output"]
            try:
                parsed = fast_loads(output) if type(output) is str else parse_json_output(output, lenient)
            except slow_error:
                parsed = parse_json_output(output, lenient)
            if type(parsed) is not dict:
                instance.errors += 1
                continue
            predicted = task.parse_output(parsed, rel_keys)
            if grounded_only:  # drop tuples with a string that is not in the input text (hallucinated spans)
                text = instruction_input(record)
                predicted = [t for t in predicted if all(s in text for s in _strings(t))]
            instance.pred.extend(predicted)

    def _missing(self, number: int | None, record: dict) -> None:
        for field in ("id", "label", "output"):
            if field not in record:
                hint = " (run deepke-llm infer on the converted test file first)" if field == "output" else ""
                raise DataError(self.o.path, number, field, f"missing{hint}")

    def _new_instance(self, number: int | None, record: dict) -> _Instance:
        o = self.o
        label = record["label"]
        if isinstance(label, str):
            try:
                label = _loads(label)
            except (ValueError, RecursionError) as exc:
                raise DataError(o.path, number, "label", f"not valid JSON: {getattr(exc, 'msg', exc)}") from None
        if not isinstance(label, list):
            raise DataError(o.path, number, "label", "expected a JSON list of annotations")
        group = ""
        if o.sort_by:
            value = record.get(o.sort_by)
            if value is None and o.sort_by == "input":
                value = instruction_input(record)
            group = str(value)
        return _Instance(group, o.task.gold_tuples(label))

    def _end_run(self) -> None:
        if self.run_key is None:
            return
        if self.scoring and (self.held is None or hash(self.run_key) not in self.held):
            self._score(self.run)
        self.run_key, self.run = None, []

    def finish(self) -> None:
        self._end_run()
        for instances in self.kept.values():
            self._score(instances)

    def result(self) -> dict[str, Any]:
        prefixes = list(self.o.task.score_levels([]).keys())
        result = {"total": self.tallies[None].result(prefixes)}
        for group in sorted(g for g in self.tallies if g is not None):
            result[group] = self.tallies[group].result(prefixes)
        return result


def _numbered(records: Iterable) -> Iterator[tuple[int | None, Any]]:
    for n, item in enumerate(records, start=1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
            yield item
        else:
            yield n, item


def _repeated(buckets: list[array]) -> set[int]:
    """The hashes that occur more than once. Kept in 64 arrays by their low bits (8 bytes per text: a Python set of
    all of them would take about 60, the difference between flat and growing memory on a large file), so the
    check needs a set of one bucket at a time, built in C."""
    repeated: set[int] = set()
    for bucket in buckets:
        if len(set(bucket)) != len(bucket):
            repeated.update(h for h, n in Counter(bucket).items() if n > 1)
    return repeated


def _evaluate(open_records: Callable[[], Iterable], options: _Options) -> dict[str, Any]:
    """Score ``(line, record)`` pairs in one pass when every text's records are adjacent, in two when some are not."""
    first = _Pass(options, held=None)
    first.consume(open_records())
    first.finish()
    if options.task is None:
        raise DataError(options.path, None, None, "no prediction records to score")
    scattered = _repeated(first.runs)
    if not scattered:
        return first.result()
    second = _Pass(options, held=scattered)
    second.consume(open_records())
    second.finish()
    return second.result()


def _options(task: str | Task | None, sort_by: str, match_mode: str, lenient: bool, rel_keys: str,
             grounded_only: bool, path: str | None) -> _Options:
    if match_mode not in ("normal", "set"):
        raise ValueError(f"match_mode must be 'normal' or 'set', got {match_mode!r}")
    if rel_keys not in ("any", "subject_object", "head_tail"):
        raise ValueError(f"rel_keys must be any, subject_object or head_tail, got {rel_keys!r}")
    task_obj = get_task(task) if isinstance(task, str) else task
    return _Options(task_obj, sort_by, match_mode == "set", lenient, rel_keys, grounded_only, path)


def evaluate_records(records: Iterable, task: str | Task | None = None, *, sort_by: str = "", match_mode: str = "normal",
                     lenient: bool = False, rel_keys: str = "any", grounded_only: bool = False,
                     path: str | None = None) -> dict[str, Any]:
    """Score prediction records (dicts, or ``(line_number, dict)`` pairs as ``iter_jsonl`` yields them).

    See the module docstring for the rules. Returns ``{"total": {...}, <group>: {...}, ...}``, groups sorted,
    when ``sort_by`` is given. A one-shot iterator is read into a list (a second pass may need it again);
    ``evaluate_file`` streams instead.
    """
    options = _options(task, sort_by, match_mode, lenient, rel_keys, grounded_only, path)
    if iter(records) is records:
        records = list(records)
    return _evaluate(lambda: _numbered(records), options)


def _records(path: str) -> Iterator[tuple[int, Any]]:
    """``(line, value)`` of a JSON Lines file, parsed by orjson; a line it refuses is read as ``json`` reads it
    (``NaN``, a BOM), or reported with file and line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                if not raw.strip():
                    continue
                value = _slow_line(path, number, raw)
            yield number, value


def _slow_line(path: str, number: int, raw: bytes) -> Any:
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, number, None, f"not UTF-8 (byte {exc.start + 1} of the line); save the file as UTF-8") from None
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise DataError(path, number, None, f"not valid JSON: {getattr(exc, 'msg', exc)}") from None


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
        # the chunk's own instruction: chunks of one text differ in it, which is how the evaluator tells the
        # chunks of one text from a duplicate text
        predictions.append({**tests[key], "instruction": record["instruction"], "output": record["output"]})
    return predictions


def default_out_path(path1: str) -> str:
    """Upstream's location: ``<dir of path1>/output_msg/<name of path1>``."""
    path = Path(path1)
    return str(path.parent / "output_msg" / path.name)


def _check_paths(path1: str, out_path: str) -> None:
    """Refuse, with a located message, what would end in a traceback or destroy the predictions."""
    for flag, path in (("--path1", path1), ("--out_path", out_path)):
        if os.path.isdir(path):
            raise DataError(path, None, flag, "is a directory; give a file path")
    if not os.path.exists(path1):
        raise FileNotFoundError(f"{path1}: prediction file not found")
    same = os.path.realpath(out_path) == os.path.realpath(path1)
    if not same and os.path.exists(out_path):
        same = os.path.samefile(out_path, path1)
    if same:
        raise DataError(out_path, None, "--out_path", "is the prediction file given as --path1; writing the metrics "
                        "there would destroy the predictions: choose another --out_path (or omit it)")


def evaluate_file(config: EvalConfig) -> tuple[dict[str, Any], str]:
    """Score ``config.path1``, streaming, and write the metrics JSON; returns ``(result, out_path)``.

    The metrics are written to a temporary file beside ``out_path`` and renamed into place, so an interrupted
    run never leaves half a file.
    """
    out_path = config.out_path or default_out_path(config.path1)
    _check_paths(config.path1, out_path)
    options = _options(config.task, config.sort_by, config.match_mode, config.lenient, config.rel_keys,
                       config.grounded_only, config.path1)
    result = _evaluate(lambda: _records(config.path1), options)
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False, indent=4)
    os.replace(partial, target)
    return result, out_path
