"""Shared fixtures: paths to the repository's data; tiny models and converted files built once per session.

Upstream's behaviour is pinned by the recorded files in ``tests/fixtures/upstream`` (``tests/upstream_fixtures.py``);
no test reads anything outside the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.icl_server import openai_server, tiny_answerer

__all__ = ["openai_server", "tiny_answerer"]  # fixtures of the local OpenAI-compatible server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def write_lines(path: Path, records) -> Path:
    """Write JSON Lines exactly as the project does (raw UTF-8, default separators)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    """A random-init tiny Qwen2 with the project's tokenizer, built once per test session."""
    from deepke_llm_core.tiny import tiny_model_path

    return tiny_model_path("qwen2", cache_dir=tmp_path_factory.mktemp("tiny-cache"))


@pytest.fixture(scope="session")
def ner_files(tmp_path_factory) -> dict[str, Path]:
    """Synthetic English NER: 16 training and 8 held-out records, converted to train and test instruction files."""
    from deepke_llm_core import synthetic
    from deepke_llm_core.convert import ConvertConfig, convert_file

    root = tmp_path_factory.mktemp("ner") / "synthetic"
    root.mkdir()
    train, test = synthetic.make_split("NER", "en", 16, 8, seed=0)
    write_lines(root / "raw_train.json", train)
    write_lines(root / "raw_test.json", test)
    (root / "schema.json").write_text(synthetic.schema_text("NER", "en"), encoding="utf-8")
    files = {}
    for name, raw, split in (("train", "raw_train.json", "train"), ("test", "raw_test.json", "test"),
                             ("train_as_test", "raw_train.json", "test")):
        files[name] = root / f"{name}.json"
        convert_file(ConvertConfig(src_path=str(root / raw), tgt_path=str(files[name]), schema_path=str(root / "schema.json"),
                                   task="NER", language="en", split=split, split_num=6))
    return files


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped on machines without a CUDA device (CI and developer laptops)."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
