"""Score prediction records (``deepke-llm evaluate``), compatible with upstream's ``eval_func.py``.

Semantics (SPEC.md §2): the chunks of one text are grouped by ``source + id`` and their predictions
concatenated; tuples are matched exactly and case-sensitively as multisets (``set`` mode de-duplicates each
scoring level of an instance first, as upstream does); P, R and F1 are micro-averaged on a 0–100 scale and
rounded to 2 decimals. A chunk whose output is not a JSON object counts one parse error (``错误数``) and
contributes nothing; it never raises (not for a 1,000-deep nest or a 5,000-digit number either).

Streaming (``scoring.py``): each text is scored when the next begins, so memory stays flat in the file size;
records of one text that are not adjacent are still scored together, in a second pass.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .io import DataError, iter_jsonl
from .scoring import instruction_input, make_options, numbered, parse_json_output, prf, score
from .tasks import Task

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


def evaluate_records(records: Iterable, task: str | Task | None = None, *, sort_by: str = "", match_mode: str = "normal",
                     lenient: bool = False, rel_keys: str = "any", grounded_only: bool = False,
                     path: str | None = None) -> dict[str, Any]:
    """Score prediction records (dicts, or ``(line_number, dict)`` pairs as ``iter_jsonl`` yields them).

    See the module docstring for the rules. Returns ``{"total": {...}, <group>: {...}, ...}``, groups sorted,
    when ``sort_by`` is given. A one-shot iterator is read into a list (a second pass may need it again);
    ``evaluate_file`` streams instead.
    """
    options = make_options(task, sort_by, match_mode, lenient, rel_keys, grounded_only, path)
    if iter(records) is records:
        records = list(records)
    return score(lambda: numbered(records), options)


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
    options = make_options(config.task, config.sort_by, config.match_mode, config.lenient, config.rel_keys,
                       config.grounded_only, config.path1)
    result = score(lambda: _records(config.path1), options)
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False, indent=4)
    os.replace(partial, target)
    return result, out_path
