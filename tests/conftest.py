"""Shared fixtures: paths to the repository's data and to the upstream reference files beside the checkout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
REFERENCE = ROOT.parent / "shared" / "reference" / "instructkgc" / "data"


@pytest.fixture
def reference_data() -> Path:
    """Upstream's sample files (../shared/reference); skipped where the checkout has no shared/ beside it."""
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is not beside this checkout")
    return REFERENCE


def write_lines(path: Path, records) -> Path:
    """Write JSON Lines exactly as the project does (raw UTF-8, default separators)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
