"""Paths into ``tests/fixtures/upstream`` and the order-blind views the conformance tests compare.

The fixtures are inputs we wrote plus upstream DeepKE's outputs on them, recorded once by
``tools/record_upstream_fixtures.py`` (see the README beside them). Nothing here runs upstream code.
"""

from __future__ import annotations

import json
from pathlib import Path

UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "upstream"
CONVERT_INPUTS = UPSTREAM / "convert" / "inputs"
CONVERT_OUTPUTS = UPSTREAM / "convert" / "outputs"
EVALUATE = UPSTREAM / "evaluate"
ICL = UPSTREAM / "icl"
ICL_DEMOS = ICL / "demos"
# upstream's recommended split_num per task (its convert_func.py help text); the recorder used the same
SPLIT_NUM = {"NER": 6, "RE": 4, "SPO": 4, "EE": 4, "EET": 4, "EEA": 4, "KG": 1}


def raw_input(task: str, language: str = "zh") -> Path:
    """A raw record file we wrote; its parent folder is named after the task (upstream's ``source``)."""
    return CONVERT_INPUTS / task / f"{language}.json"


def schema_file(task: str, language: str = "zh") -> Path:
    return CONVERT_INPUTS / task / f"schema_{language}.json"


def recorded(task: str, language: str, variant: str) -> Path:
    """Upstream's converter output for one input; variants: train, test, train.neg0, train.split-1."""
    return CONVERT_OUTPUTS / task / f"{language}.{variant}.json"


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _normal(value):
    """Lists become sorted lists of canonical JSON, so that only membership and multiplicity count."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted(json.dumps(_normal(v), ensure_ascii=False, sort_keys=True) for v in value)
    return value


def order_blind_lines(path: Path) -> list[str]:
    """Each instruction line with every list and key order normalised; the lines themselves sorted.

    For EE/EEA training files: upstream iterates sets of roles, so the roles inside a schema item and the keys
    inside an answer come in hash order, while chunks and records are otherwise the same.
    """
    out = []
    for record in lines(path):
        record = dict(record, instruction=_normal(json.loads(record["instruction"])))
        for key in ("output", "label"):
            if key in record:
                record[key] = _normal(json.loads(record[key]))
        out.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    return sorted(out)


def by_text(path: Path) -> dict[str, tuple[list[str], object, int]]:
    """Per input text: the multiset of schema entries over its chunks, the merged answer or label, the chunk count.

    For test files: upstream chunks the schema in set order, so which entries share a chunk differs, but each
    text is asked about the same entries, in the same number of chunks, with the same label and id.
    """
    found: dict[str, dict] = {}
    for record in lines(path):
        instruction = json.loads(record["instruction"])
        entry = found.setdefault(instruction["input"], {"schema": [], "answer": {}, "chunks": 0, "id": record.get("id")})
        entry["chunks"] += 1
        entry["schema"] += [json.dumps(_normal(s), ensure_ascii=False, sort_keys=True) for s in instruction["schema"]]
        if "output" in record:
            for key, value in json.loads(record["output"]).items():
                previous = entry["answer"].get(key)
                entry["answer"][key] = previous + value if isinstance(previous, list) else value
        elif "label" in record:
            entry["answer"] = json.loads(record["label"])
        assert entry["id"] == record.get("id"), "one text, one id"
    return {text: (sorted(e["schema"]), _normal(e["answer"]), e["chunks"], e["id"]) for text, e in found.items()}
