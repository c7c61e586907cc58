"""Every chapter in notebooks/ is committed clean and runs headless under papermill on the tiny defaults."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FORBIDDEN = ("input(", "getpass", "OPENAI_API_KEY=", "sk-")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "starts with a title"
    opening = "\n".join(c.source for c in nb.cells[:3] if c.cell_type == "markdown")
    assert "What you will learn" in opening or "what you will learn" in opening, "says what you will learn"
    assert "colab.research.google.com/github/" in opening and f"/notebooks/{path.name})" in opening, "has its Colab badge"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "outputs and execution counts are stripped"
            assert not any(word in cell.source for word in FORBIDDEN), "no prompts for input, no secrets"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for every chapter, so the tiny models are built once per test session."""
    return tmp_path_factory.mktemp("deepke-llm-cache")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path, shared_cache: Path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("DEEPKE_LLM_CACHE", str(shared_cache))  # the kernel inherits the environment
    papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(path.parent), kernel_name="python3",
                               parameters={"workdir": str(tmp_path / "work")}, progress_bar=False,
                               start_timeout=120, execution_timeout=600)
