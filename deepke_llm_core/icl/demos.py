"""Demonstrations for in-context learning: ``<task>_<language>.json`` files in upstream's layout, checked on load.

Why check before any call: a malformed file fails on every request, and with a paid API each failure costs
money. So every file is validated when it is loaded (shape and types), and errors name the file and the field.
A mention that does not occur in its demonstration's text (``ner_en.json: samples[1].data[0].W: 'Pariss' does not
occur in the demonstration's text``) is only a warning: it may teach the model to invent spans, but upstream's own
``rte_en.json`` has such a label, and its data directories must keep working.

Layouts (SPEC.md §6.3), one per task:

* ner: ``{"samples": [{"id", "text", "data": [{"E": type, "W": mention}]}]}``
* re, da: ``[{"text", "head_type", "head_entity", "tail_type", "tail_entity", "relation"}]``
* ee: ``[{"text", "event_list": [{"event_type", "arguments": [{"role", "argument"}]}]}]``
* rte: ``[{"text", "labels": [[head, relation, tail]]}]``

Chinese files may be named ``_zh``, ``_ch`` (upstream's ``deepke-llm`` branch) or ``_cn`` (upstream's ``main``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from ..io import DataError, read_json
from .prompts import check_task, normalize_language

__all__ = ["default_demo_dir", "demo_file", "load_demos", "normalize_demos"]

_SUFFIXES = {"en": ("en",), "ch": ("zh", "ch", "cn")}
_PAIR_FIELDS = ("text", "head_type", "head_entity", "tail_type", "tail_entity", "relation")


def default_demo_dir() -> Path:
    """The repository's ``data/icl`` folder (found beside the package, never from the current directory)."""
    from ..resources import data_dir

    return data_dir() / "icl"


def demo_file(task: str, language: str, data_path: str | os.PathLike | None = None) -> Path:
    """The demonstrations file for a task and language; the error lists the names that were tried."""
    task, language = check_task(task), normalize_language(language)
    folder = Path(data_path) if data_path else default_demo_dir()
    tried = [folder / f"{task}_{suffix}.json" for suffix in _SUFFIXES[language]]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no demonstrations for task {task} ({language}): tried {', '.join(str(p) for p in tried)}")


def _str(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(path, None, where, f"expected a non-empty string, got {value!r}")
    return value


def _list(path: Path, where: str, value: Any) -> list:
    if not isinstance(value, list):
        raise DataError(path, None, where, f"expected a list, got {type(value).__name__}")
    return value


def _obj(path: Path, where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise DataError(path, None, where, f"expected a JSON object, got {type(value).__name__}")
    return value


def _occurs(path: Path, where: str, mention: str, text: str) -> None:
    if mention not in text:
        message = f"{mention!r} does not occur in the demonstration's text; kept, as upstream does"
        warnings.warn(str(DataError(path, None, where, message)), UserWarning, stacklevel=2)


def _ner(path: Path, data: Any) -> list[dict]:
    samples = _list(path, "samples", _obj(path, "(top level)", data).get("samples"))
    out = []
    for i, sample in enumerate(samples):
        sample = _obj(path, f"samples[{i}]", sample)
        if "text" not in sample:
            raise DataError(path, None, f"samples[{i}].text", "missing: each NER demonstration needs its input text "
                            "(upstream's old text-less ner files cannot be used)")
        text = _str(path, f"samples[{i}].text", sample["text"])
        entities = _list(path, f"samples[{i}].data", sample.get("data"))
        for j, entity in enumerate(entities):
            entity = _obj(path, f"samples[{i}].data[{j}]", entity)
            _str(path, f"samples[{i}].data[{j}].E", entity.get("E"))
            _occurs(path, f"samples[{i}].data[{j}].W", _str(path, f"samples[{i}].data[{j}].W", entity.get("W")), text)
        out.append({"input": text, "output": entities})
    return out


def _pairs(path: Path, data: Any) -> list[dict]:
    out = []
    for i, item in enumerate(_list(path, "(top level)", data)):
        item = _obj(path, f"[{i}]", item)
        values = {key: _str(path, f"[{i}].{key}", item.get(key)) for key in _PAIR_FIELDS}
        for key in ("head_entity", "tail_entity"):
            _occurs(path, f"[{i}].{key}", values[key], values["text"])
        out.append({"context": values.pop("text"), **values})
    return out


def _ee(path: Path, data: Any) -> list[dict]:
    out = []
    for i, item in enumerate(_list(path, "(top level)", data)):
        item = _obj(path, f"[{i}]", item)
        text = _str(path, f"[{i}].text", item.get("text"))
        events = _list(path, f"[{i}].event_list", item.get("event_list"))
        for j, event in enumerate(events):
            event = _obj(path, f"[{i}].event_list[{j}]", event)
            _str(path, f"[{i}].event_list[{j}].event_type", event.get("event_type"))
            for k, arg in enumerate(_list(path, f"[{i}].event_list[{j}].arguments", event.get("arguments"))):
                where = f"[{i}].event_list[{j}].arguments[{k}]"
                arg = _obj(path, where, arg)
                _str(path, where + ".role", arg.get("role"))
                _occurs(path, where + ".argument", _str(path, where + ".argument", arg.get("argument")), text)
        out.append({"input": text, "output": events})
    return out


def _rte(path: Path, data: Any) -> list[dict]:
    out = []
    for i, item in enumerate(_list(path, "(top level)", data)):
        item = _obj(path, f"[{i}]", item)
        text = _str(path, f"[{i}].text", item.get("text"))
        triples = _list(path, f"[{i}].labels", item.get("labels"))
        for j, triple in enumerate(triples):
            if not (isinstance(triple, list) and len(triple) == 3):
                raise DataError(path, None, f"[{i}].labels[{j}]", f"expected [head, relation, tail], got {triple!r}")
            for k, name in ((0, "head"), (2, "tail")):
                _occurs(path, f"[{i}].labels[{j}] ({name})", _str(path, f"[{i}].labels[{j}][{k}]", triple[k]), text)
            _str(path, f"[{i}].labels[{j}][1]", triple[1])
        out.append({"input": text, "output": triples})
    return out


_LAYOUTS = {"samples": _ner, "pairs": _pairs, "events": _ee, "triples": _rte}


def normalize_demos(task: str, data: Any, path: str | os.PathLike = "<demonstrations>") -> list[dict]:
    """Validate one file's parsed content and return normalised demonstrations for ``prompts.examples_block``."""
    from .prompts import icl_task

    path = Path(path)
    demos = _LAYOUTS[icl_task(task).demo_layout](path, data)
    if not demos:
        raise DataError(path, None, None, "no demonstrations in the file")
    return demos


def load_demos(task: str, language: str, data_path: str | os.PathLike | None = None) -> list[dict]:
    """Read, validate and normalise ``<data_path>/<task>_<language>.json`` (default folder: ``data/icl``).

    >>> [d["relation"] for d in load_demos("re", "en")][:1]  # doctest: +SKIP
    ['founded_by']
    """
    path = demo_file(task, language, data_path)
    return normalize_demos(task, read_json(path), path)
