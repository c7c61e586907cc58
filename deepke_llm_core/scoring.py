"""The streaming scorer behind ``deepke-llm evaluate`` (``evaluate.py`` says what is scored and how).

A converted file keeps the chunks of one text adjacent, so an instance is scored as soon as the next text starts
and then forgotten: memory stays flat in the file size (8 bytes per text aside: the hash of its key, to notice a
text that comes back). Records of one text that are *not* adjacent are still scored together: the first pass
notices a text coming back, and a second pass holds exactly those texts' records until the end (about twice
the time; ``bench/evaluate.py`` measures it). Records are parsed with orjson, 3-4x faster than ``json`` here,
with ``json`` semantics kept for what orjson refuses. Answers and labels are counted as the task's score items
(``Task.score_answer``/``score_gold``: tuples equal exactly when the typed extractions are, checked for every task
in ``tests/test_scoring.py``); typed extractions are built only for ``--errors`` and ``--grounded_only``, which
look inside them. Building them was about a third of the time on a large file.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson  # a small compiled parser; imported eagerly as the hot loop needs it

from .io import DataError
from .records import instruction_record
from .tasks import TASKS, Task, get_task

__all__ = ["prf", "score_lists", "parse_json_output", "instruction_input", "loads_like_json", "ScoreOptions", "make_options", "numbered",
           "score"]


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


def loads_like_json(text: str | bytes) -> Any:
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
        value = loads_like_json(text)
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
        return loads_like_json(candidate)
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
        parsed = instruction_record(record)
    except (ValueError, RecursionError):
        return fallback
    return parsed.input if parsed.is_iepile else fallback


class _Instance:
    """The chunks of one text: gold once, predictions concatenated, parse errors counted.

    ``gold`` and ``pred`` are typed extractions when errors are classified or spans checked against the text (both
    need the objects), else the task's score items by level (``Task.score_gold``/``score_answer``), which are ten
    times cheaper to make. ``seen`` holds the instructions of its chunks: a chunk asking the same again belongs to a
    duplicate text.
    """

    __slots__ = ("group", "gold", "pred", "errors", "seen", "text")

    def __init__(self, group: str, gold: list | dict, text: str = ""):
        self.group = group
        self.gold = gold
        self.text = text  # the input, kept only when errors are classified
        self.pred: list | dict = [] if isinstance(gold, list) else {}
        self.errors = 0
        self.seen: set = set()


class _Tally:
    """Micro-averaged counts of one group (the total, or one ``sort_by`` value): per level, the types of the
    true positives, of the predictions and of the gold items. Types are collected in lists and counted a few
    thousand at a time (Counter.update runs in C; calling it three times per text was a tenth of the time)."""

    __slots__ = ("instances", "errors", "counts", "pending", "classified")

    _BATCH = 4096  # types held before counting: memory stays flat

    def __init__(self, classified: Any = None):
        self.instances = 0
        self.errors = 0
        self.counts: dict[str, tuple[Counter, Counter, Counter]] = {}  # prefix -> (tp, pred, gold) by type
        self.pending: dict[str, tuple[list, list, list]] = {}  # prefix -> types not yet counted
        self.classified = classified  # an errors.ErrorCounter when --errors is on

    def add(self, levels: list[tuple[str, list, list, list]], errors: int) -> None:
        self.instances += 1
        self.errors += errors
        for prefix, tp, pred, gold in levels:
            lists = self.pending.get(prefix)
            if lists is None:
                lists = self.pending[prefix] = ([], [], [])
                self.counts[prefix] = (Counter(), Counter(), Counter())
            lists[0].extend(tp)
            lists[1].extend(pred)
            lists[2].extend(gold)
            if len(lists[2]) > self._BATCH or len(lists[1]) > self._BATCH:
                self._count(prefix)

    def _count(self, prefix: str) -> None:
        for counter, types in zip(self.counts[prefix], self.pending[prefix]):
            counter.update(types)
            types.clear()

    def result(self, prefixes: list[str]) -> dict[str, Any]:
        """Upstream's result keys (总样本数, 错误数, P/R/F1 or event_/argument_ prefixed) plus ``per_type``."""
        for prefix in self.pending:
            self._count(prefix)
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
        if self.classified is not None:
            self.classified.attach(result)
        return result


def _instance_counts(task: Task, instance: _Instance, dedupe: bool) -> list[tuple[str, list, list, list]]:
    """``[(prefix, tp types, pred types, gold types)]`` of one instance: the type of every true positive,
    prediction and gold item, per level; ``dedupe`` (set mode) de-duplicates each level, as upstream does."""
    preds, golds = instance.pred, instance.gold
    if isinstance(golds, list):  # typed extractions
        preds, golds = task.score_levels(preds), task.score_levels(golds)
    levels = []
    prefixes = list(golds) + [prefix for prefix in preds if prefix not in golds]
    for prefix in prefixes:
        pred_items = preds.get(prefix, [])
        gold_items = golds.get(prefix, [])
        if dedupe:  # an item's type is a function of the item, so de-duplicating (type, item) pairs is upstream's set()
            pred_items, gold_items = list(dict.fromkeys(pred_items)), list(dict.fromkeys(gold_items))
        tp: list[str] = []
        if pred_items and gold_items:
            if len(gold_items) <= 16:  # the usual text: a list scan beats building two Counters by far
                unmatched = list(gold_items)
                for item in pred_items:
                    if item in unmatched:
                        unmatched.remove(item)
                        tp.append(item[0])
            else:
                gold_counter = Counter(gold_items)
                for item, n in Counter(pred_items).items():
                    hit = gold_counter.get(item)
                    if hit:
                        tp += [item[0]] * min(n, hit)
        levels.append((prefix, tp, [kind for kind, _ in pred_items], [kind for kind, _ in gold_items]))
    return levels


def score_lists(task: Task, instances: Iterable[tuple[list, list, int]], match_mode: str = "normal") -> dict[str, Any]:
    """Score typed extractions already in memory, ``(gold, predicted, parse errors)`` per text, with the same
    matching and result keys as ``deepke-llm evaluate`` (``extract``'s document-level F1 uses it)."""
    tally = _Tally()
    for gold, pred, errors in instances:
        instance = _Instance("", gold)
        instance.pred = list(pred)
        tally.add(_instance_counts(task, instance, match_mode == "set"), errors)
    return tally.result(list(task.score_levels([]).keys()))


@dataclass
class ScoreOptions:
    task: Task | None
    sort_by: str
    dedupe: bool
    lenient: bool
    rel_keys: str
    grounded_only: bool
    path: str | None
    errors: bool = False

    @property
    def typed(self) -> bool:
        """Whether instances keep typed extractions (error classes and grounding need them) or score items."""
        return self.errors or self.grounded_only

    def classifier(self) -> Any:
        """An error classifier (``errors.ErrorCounter``) for one group when ``errors`` is on, else None; made once
        the task is known (records may name it)."""
        if not self.errors:
            return None
        from .errors import ErrorCounter

        return ErrorCounter(self.task, self.dedupe)


class _Pass:
    """One pass over the records: instances scored as their text's run of records ends.

    Without ``held``, the hash of each run's key is appended to ``runs`` (8 bytes per text, the only thing that
    grows with the file; see ``_repeated``); a hash found twice there at the end is a text whose records are
    scattered, and the caller makes a second pass with ``held`` = those hashes, whose instances are kept to the end.
    """

    def __init__(self, options: ScoreOptions, held: set[int] | None):
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
            tallies = [self.tallies[None]]
            if sort_by:
                tally = self.tallies.get(instance.group)
                if tally is None:
                    tally = self.tallies[instance.group] = _Tally()
                tallies.append(tally)
            for tally in tallies:
                tally.add(counts, instance.errors)
                if self.o.errors:
                    if tally.classified is None:
                        tally.classified = self.o.classifier()
                    tally.classified.add(instance.text, instance.gold, instance.pred)

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
        """Feed ``(line, record)`` pairs. One loop with local names: it runs once per line of a large file, and
        most lines continue the text of the line before (``run_key`` unchanged), which skips the run bookkeeping."""
        o = self.o
        lenient, rel_keys, grounded_only = o.lenient, o.rel_keys, o.grounded_only
        typed = o.typed
        held, runs, recent = self.held, self.runs, self.recent
        fast_loads, slow_error = orjson.loads, orjson.JSONDecodeError
        last_task: Any = self  # no record's task field is this object: the first record is always checked
        task = o.task
        score_answer = task.score_answer if task is not None else None
        run_key, run = self.run_key, self.run
        pairs = iter(pairs)  # a scattered file's rest goes to _collect_keys from where this loop stops
        last_id: Any = self  # no record's id is this object
        last_source: Any = self
        for number, record in pairs:
            if type(record) is not dict:
                raise DataError(o.path, number, None, "expected a JSON object")
            given = record.get("task")
            if given != last_task or task is None:
                self._check_task(number, record)
                last_task, task = given, o.task
                score_answer = task.score_answer
            if "id" not in record or "label" not in record or "output" not in record:
                self._missing(number, record)
            source, rid = record.get("source", "None"), record["id"]
            if rid == last_id and source == last_source and type(rid) is str and type(source) is str:
                key = run_key  # the text of the line before (the usual case)
            else:
                last_id, last_source = rid, source
                key = _run_key(source, rid)
            if key != run_key:
                self._end_run()
                self.run_key = run_key = key
                h = hash(key)
                if held is None:
                    runs[h & 63].append(h)
                    run = []
                    if h in recent:  # certainly scattered: this pass's numbers will be discarded
                        self.scoring = False
                    recent.add(h)
                    if len(recent) > 4096:
                        recent.clear()
                elif h in held:
                    run = self.kept.setdefault(key, [])
                else:
                    run = []
                self.run = run
                if not self.scoring:
                    break
            instruction = record.get("instruction")
            instance = None
            if type(instruction) is str:
                for candidate in run:
                    if instruction not in candidate.seen:
                        instance = candidate
                        break
                if instance is None:
                    instance = self._new_instance(number, record)
                    run.append(instance)
                instance.seen.add(instruction)
            elif run:  # without an instruction, chunks are never taken for a duplicate text
                instance = run[0]
            else:
                instance = self._new_instance(number, record)
                run.append(instance)
            output = record["output"]
            try:
                parsed = fast_loads(output) if type(output) is str else parse_json_output(output, lenient)
            except slow_error:
                parsed = parse_json_output(output, lenient)
            if type(parsed) is not dict:
                instance.errors += 1
            elif typed:
                predicted = task.parse_output(parsed, rel_keys)
                if grounded_only:  # drop tuples with a string that is not in the input text (hallucinated spans)
                    from .align import TextIndex, not_in_text

                    text = TextIndex(instruction_input(record))
                    predicted = [e for e in predicted if not not_in_text(e, text)]
                instance.pred.extend(predicted)
            else:
                pred = instance.pred
                for prefix, items in score_answer(parsed, rel_keys).items():
                    if prefix in pred:
                        pred[prefix].extend(items)
                    else:
                        pred[prefix] = items
        if not self.scoring:  # the rest of the file only needs its run keys
            self._collect_keys(pairs)

    def _collect_keys(self, pairs: Iterable[tuple[int | None, Any]]) -> None:
        """The rest of a scattered file's first pass: each run's key hash, for the second pass to hold."""
        runs, run_key = self.runs, self.run_key
        for number, record in pairs:
            if type(record) is not dict:
                raise DataError(self.o.path, number, None, "expected a JSON object")
            if "id" not in record:
                self._missing(number, record)
            key = _run_key(record.get("source", "None"), record["id"])
            if key != run_key:
                run_key = key
                h = hash(key)
                runs[h & 63].append(h)
        self.run_key, self.run = None, []

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
                label = loads_like_json(label)
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
        if not o.typed:
            return _Instance(group, o.task.score_gold(label))
        return _Instance(group, o.task.gold_tuples(label), instruction_input(record) if o.errors else "")

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
        for tally in self.tallies.values():
            if self.o.errors and tally.classified is None:  # a group without instances still reports zero counts
                tally.classified = self.o.classifier()
        result = {"total": self.tallies[None].result(prefixes)}
        for group in sorted(g for g in self.tallies if g is not None):
            result[group] = self.tallies[group].result(prefixes)
        return result


def numbered(records: Iterable) -> Iterator[tuple[int | None, Any]]:
    for n, item in enumerate(records, start=1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
            yield item
        else:
            yield n, item


def _run_key(source: Any, rid: Any) -> str:
    """The key of a text's run of records: its source and id (upstream's ``source + id``)."""
    return (source if type(source) is str else str(source)) + (rid if type(rid) is str else str(rid))


def _repeated(buckets: list[array]) -> set[int]:
    """The hashes that occur more than once. Kept in 64 arrays by their low bits (8 bytes per text: a Python set of
    all of them would take about 60, the difference between flat and growing memory on a large file), so the
    check needs a set of one bucket at a time, built in C."""
    repeated: set[int] = set()
    for bucket in buckets:
        if len(set(bucket)) != len(bucket):
            repeated.update(h for h, n in Counter(bucket).items() if n > 1)
    return repeated


def score(open_records: Callable[[], Iterable], options: ScoreOptions) -> dict[str, Any]:
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


def make_options(task: str | Task | None, sort_by: str, match_mode: str, lenient: bool, rel_keys: str,
             grounded_only: bool, path: str | None, errors: bool = False) -> ScoreOptions:
    if match_mode not in ("normal", "set"):
        raise ValueError(f"match_mode must be 'normal' or 'set', got {match_mode!r}")
    if rel_keys not in ("any", "subject_object", "head_tail"):
        raise ValueError(f"rel_keys must be any, subject_object or head_tail, got {rel_keys!r}")
    task_obj = get_task(task) if isinstance(task, str) else task
    return ScoreOptions(task_obj, sort_by, match_mode == "set", lenient, rel_keys, grounded_only, path, errors)
