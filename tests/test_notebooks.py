"""Every chapter in notebooks/ is committed clean, opens in Colab from the declared address, installs itself there
(and only there), is written the way the cookbook promises, and runs headless under papermill on the tiny defaults.

The Colab address is computed here from ``pyproject.toml`` on its own (not by ``tools/colab.py``, which writes it),
so a badge or an install cell that drifts from the declared repository or release fails for every chapter, new
chapters included; ``python tools/colab.py`` fixes them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FORBIDDEN = ("input(", "getpass", "OPENAI_API_KEY=", "sk-")
DEFINITION = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s", re.M)
INSTRUCTION_PARSED_BY_HAND = re.compile(r"json\.loads\([^()]*\[\s*[\"']instruction[\"']\s*\]")
HTML_TABLE = re.compile(r"<(?:table|tr|td|th)\b")

with open(ROOT / "pyproject.toml", "rb") as _handle:
    _PROJECT = tomllib.load(_handle)["project"]
REPOSITORY = _PROJECT["urls"]["Repository"].rstrip("/")
RELEASE = f"v{_PROJECT['version']}"


def colab_url(path: Path) -> str:
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{RELEASE}/notebooks/{path.name}"


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "starts with a title"
    opening = "\n".join(c.source for c in nb.cells[:3] if c.cell_type == "markdown")
    assert "What you will learn" in opening or "what you will learn" in opening, "says what you will learn"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for cell in code_cells(nb):
        assert not cell.outputs and cell.execution_count is None, "outputs and execution counts are stripped"
        assert not any(word in cell.source for word in FORBIDDEN), "no prompts for input, no secrets"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_colab_badge_install_cell_and_gpu_settings_come_from_the_declared_address(path: Path):
    nb = nbformat.read(path, as_version=4)
    opening = "\n".join(c.source for c in nb.cells[:3] if c.cell_type == "markdown")
    links = re.findall(r"\(https://colab\.research\.google\.com/github/[^)]+\)", opening)
    assert links == [f"({colab_url(path)})"], f"one badge, to {colab_url(path)} (run: python tools/colab.py)"
    assert "T4" in opening and "`--fp16`" in opening and "`--bits 4`" in opening, "says what to use on Colab's GPU"
    first = code_cells(nb)[0].source
    assert first.startswith("# Colab only"), "the first code cell is the Colab install cell (python tools/colab.py)"
    assert 'find_spec("google.colab")' in first, "it acts only where google.colab is importable"
    assert f'"--branch", "{RELEASE}", "{REPOSITORY}"' in first, "it installs the declared repository at the release"
    extras = nb.metadata.get("deepke_llm", {}).get("colab_extras", [])
    assert (f"{{source}}[{','.join(extras)}]" if extras else '"-e", f"{source}"') in first, "with the chapter's extras"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_calls_the_library_the_way_the_cookbook_teaches(path: Path):
    """At most one def/class (the library does the work), no instruction JSON parsed by hand
    (``records.instruction_record``), no tables built as HTML (pandas DataFrames, viz functions)."""
    cells = [cell.source for cell in code_cells(nbformat.read(path, as_version=4))]
    definitions = [m.group(0).strip() for source in cells for m in DEFINITION.finditer(source)]
    assert len(definitions) <= 1, f"{len(definitions)} definitions: {definitions}"
    assert not [s for s in cells if INSTRUCTION_PARSED_BY_HAND.search(s)], "use deepke_llm_core.records.instruction_record"
    assert not [s for s in cells if HTML_TABLE.search(s)], "tables are pandas DataFrames; pictures come from viz"


def _kernel_for(python: Path, jupyter_dir: Path) -> str:
    """A Jupyter kernel spec that runs ``python`` (found through JUPYTER_PATH)."""
    spec = jupyter_dir / "kernels" / "colab-test"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                                  "display_name": "colab test", "language": "python"}))
    return "colab-test"


@pytest.mark.slow
def test_the_colab_cell_installs_the_package_offline_where_google_colab_is_importable(tmp_path, monkeypatch):
    """A fresh environment that has the dependencies but not this package, and a stub ``google.colab``: the first
    code cell of a chapter installs the package from the local checkout (``DEEPKE_LLM_COLAB_SOURCE``, pip offline)
    and the next cell imports it. The same cell without the stub does nothing, and the import fails."""
    from nbclient import NotebookClient

    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    stub = tmp_path / "stub"
    (stub / "google" / "colab").mkdir(parents=True)
    (stub / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab\'s google.colab."""\n')
    # The dependencies (torch, transformers, ipykernel, pip, ...) come from this test's environment; the package does
    # not: its editable install is a .pth *finder* there, which a path added by a .pth file does not run.
    (site_packages / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("DEEPKE_LLM_COLAB_SOURCE", str(ROOT))
    for name, value in (("PIP_NO_INDEX", "1"), ("PIP_NO_DEPS", "1"), ("PIP_NO_BUILD_ISOLATION", "0")):
        monkeypatch.setenv(name, value)  # offline: no index, no dependency resolution, the installed setuptools
    kernel = _kernel_for(python, tmp_path / "jupyter")
    chapter = NOTEBOOKS[-1]  # any chapter: the cell differs only in its extras
    install = code_cells(nbformat.read(chapter, as_version=4))[0].source
    check = "import deepke_llm_core, importlib.metadata\nprint(deepke_llm_core.__file__, importlib.metadata.version('deepke-llm-cookbook'))"

    def run(with_stub: bool):
        if with_stub:
            monkeypatch.setenv("PYTHONPATH", str(stub))
        else:
            monkeypatch.delenv("PYTHONPATH", raising=False)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(install), nbformat.v4.new_code_cell(check)])
        NotebookClient(nb, kernel_name=kernel, timeout=600, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}).execute()
        return ["".join(o.get("text", "") or o.get("evalue", "") for o in cell.outputs) for cell in nb.cells]

    elsewhere = run(with_stub=False)
    assert elsewhere[0] == "", "outside Colab the cell prints and installs nothing"
    assert "No module named 'deepke_llm_core'" in elsewhere[1], "the fresh environment really lacks the package"
    on_colab = run(with_stub=True)
    assert f"Colab: pip install -e {ROOT}" in on_colab[0] and "Colab: deepke-llm-cookbook" in on_colab[0]
    assert on_colab[1].split() == [str(ROOT / "deepke_llm_core" / "__init__.py"), _PROJECT["version"]], on_colab


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for every chapter, so the tiny models are built once per test session."""
    return tmp_path_factory.mktemp("deepke-llm-cache")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path, shared_cache: Path, monkeypatch):
    """Every chapter runs; its claims are ``assert``s, so a regression fails here rather than printing a wrong claim."""
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("DEEPKE_LLM_CACHE", str(shared_cache))  # the kernel inherits the environment
    papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(path.parent), kernel_name="python3",
                               parameters={"workdir": str(tmp_path / "work")}, progress_bar=False,
                               start_timeout=300, execution_timeout=1800)  # per cell; a loaded 2-core CI machine
