"""The bundled sample data: every file converts in both splits, and every annotation is grounded in its text."""

from __future__ import annotations

import pytest

from deepke_llm_core.convert import ConvertConfig, convert_file
from deepke_llm_core.schema import load_schema
from deepke_llm_core.tasks import TASKS
from tests.conftest import DATA, read_lines

CASES = [(lang, task) for lang in ("zh", "en") for task in TASKS]


def strings_of(task: str, record: dict) -> list[str]:
    if task == "NER":
        return [e["entity"] for e in record["entity"]]
    if task in ("RE", "SPO", "KG"):
        return [s for r in record["relation"] for s in (r["head"], r["tail"])]
    return [s for e in record["event"] for s in [e["event_trigger"]] + [a["argument"] for a in e["arguments"]]]


@pytest.mark.parametrize("language,task", CASES)
def test_sample_converts_in_both_splits_and_is_grounded(tmp_path, language, task):
    folder = DATA / language / task
    load_schema(folder / "schema.json")
    records = read_lines(folder / "sample.json")
    assert len(records) >= 8
    for record in records:
        for value in strings_of(task, record):
            assert value in record["text"], (value, record["text"])
    for split in ("train", "test"):
        out = tmp_path / f"{split}.json"
        report = convert_file(ConvertConfig(src_path=str(folder / "sample.json"), tgt_path=str(out), task=task, language=language,
                                            schema_path=str(folder / "schema.json"), split=split, split_num=1 if task == "KG" else 4))
        assert report.records_read == len(records) and not report.skipped
        assert read_lines(out)[0]["source"] == task
