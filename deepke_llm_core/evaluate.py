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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .io import DataError, iter_jsonl
from .records import instruction_record
from .scoring import instruction_input, make_options, numbered, parse_json_output, prf, score
from .tasks import Task

__all__ = ["EvalConfig", "evaluate_file", "evaluate_records", "reference_predictions", "parse_json_output", "prf",
           "instruction_input",
           "default_out_path"]


@dataclass
class EvalConfig:
    """The ``deepke-llm evaluate`` flags."""

    path1: str = field(metadata={"help": "prediction records: converted test records plus `output`"})
    task: str | None = field(default=None, metadata={"help": "NER, RE, SPO, EE, EET, EEA or KG; default: the records' task field"})
    sort_by: str = field(default="", metadata={"help": "also score per value of this field, e.g. source"})
    match_mode: str = field(default="normal", metadata={"help": "set: de-duplicate each scoring level of an instance first",
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


def evaluate_records(records: Iterable, task: str | Task | None = None, *, sort_by: str = "", match_mode: str = "normal",
                     lenient: bool = False, rel_keys: str = "any", grounded_only: bool = False,
                     errors: bool = False, path: str | None = None) -> dict[str, Any]:
    """Score prediction records (dicts, or ``(line_number, dict)`` pairs as ``iter_jsonl`` yields them).

    See the module docstring for the rules; ``errors`` adds the error categories of ``errors.py``. Returns ``{"total": {...}, <group>: {...}, ...}``, groups sorted,
    when ``sort_by`` is given. A one-shot iterator is read into a list (a second pass may need it again);
    ``evaluate_file`` streams instead.
    """
    options = make_options(task, sort_by, match_mode, lenient, rel_keys, grounded_only, path, errors)
    if iter(records) is records:
        records = list(records)
    return score(lambda: numbered(records), options)


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
        text = instruction_record(record).input
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


def evaluate_file(config: EvalConfig) -> tuple[dict[str, Any], str]:
    """Score ``config.path1``, streaming, and write the metrics JSON; returns ``(result, out_path)``.

    The metrics are written to a temporary file beside ``out_path`` and renamed into place, so an interrupted
    run never leaves half a file.
    """
    from .io import check_input_file, check_output_path

    out_path = config.out_path or default_out_path(config.path1)
    check_input_file(config.path1, "--path1")
    check_output_path(out_path, "--out_path", (config.path1, "--path1"))
    options = make_options(config.task, config.sort_by, config.match_mode, config.lenient, config.rel_keys,
                       config.grounded_only, config.path1, config.errors)
    result = score(lambda: iter_jsonl(config.path1), options)
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(result, handle, ensure_ascii=False, indent=4)
    os.replace(partial, target)
    return result, out_path
