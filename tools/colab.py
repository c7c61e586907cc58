"""Write every chapter's Colab parts from the one declared address: ``python tools/colab.py`` (``--check``: only say
what is out of date, exit 1 if anything is).

The repository's address is ``[project.urls] Repository`` in ``pyproject.toml`` and the release is ``v<version>``;
from them and a notebook's path this writes, for every ``notebooks/NN_*.ipynb`` (new chapters included):

* the "Open in Colab" badge at the end of the chapter's first cell, followed by what to use on Colab's free GPU;
* the chapter's first code cell: on Colab only, clone the release and ``pip install -e`` it with the extras the
  chapter declares in its notebook metadata (``"deepke_llm": {"colab_extras": ["quant"]}``); anywhere else the cell
  does nothing. ``DEEPKE_LLM_COLAB_SOURCE`` names a local checkout to install instead (the tests use it, offline);
* the badge of every chapter listed in ``README.md`` and ``README_CN.md``.

Badges and the install cell name the same release, so the notebook a badge opens is the one whose code it installs.
On a release: bump ``version``, run this, commit, and push the tag ``v<version>``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
CELL_ID = "colab-install"
COLAB_NOTE = ("**On Colab** (Runtime → Change runtime type → T4 GPU): the first code cell installs this package and "
              "does nothing anywhere else. The free T4 has no bf16: where a command or recipe says `--bf16`, use "
              "`--fp16` (`fp16=True`); load models above about 3B parameters in 4 bits (`--bits 4`, bitsandbytes). "
              "The tiny defaults run on Colab's CPU as they do here.")


def project() -> tuple[str, str]:
    """(repository URL without a trailing slash, release tag) from pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        meta = tomllib.load(handle)["project"]
    return meta["urls"]["Repository"].rstrip("/"), f"v{meta['version']}"


def badge_url(notebook: str) -> str:
    """The Colab address of ``notebooks/<notebook>`` at the release."""
    repository, tag = project()
    return f"https://colab.research.google.com/github/{repository.split('github.com/', 1)[1]}/blob/{tag}/notebooks/{notebook}"


def badge(notebook: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({badge_url(notebook)})"


def install_cell(extras: list[str]) -> str:
    repository, tag = project()
    name = repository.rsplit("/", 1)[1]
    spec = f"{{source}}[{','.join(extras)}]" if extras else "{source}"
    return f'''# Colab only: clone this cookbook at its release {tag} and install it with the extras this chapter needs
# ({', '.join(extras) or 'none'}). Anywhere else this cell does nothing: the package is installed already (make install).
import importlib.metadata
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("google") and importlib.util.find_spec("google.colab"):
    source = os.environ.get("DEEPKE_LLM_COLAB_SOURCE", "/content/{name}")
    if not os.path.isdir(source):
        print("Colab: cloning {repository} at {tag} into", source)
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", "{tag}", "{repository}", source], check=True)
    print(f"Colab: pip install -e {spec} (a few minutes the first time) ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{spec}"], check=True)
    import site
    import sysconfig

    site.addsitedir(sysconfig.get_paths()["purelib"])  # this kernel sees the new install without a restart
    import deepke_llm_core

    print("Colab: deepke-llm-cookbook", importlib.metadata.version("deepke-llm-cookbook"), "from", deepke_llm_core.__file__)'''


def _is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and cell.source.startswith("# Colab only")


def sync_notebook(path: Path) -> bool:
    """Bring one chapter's badge, Colab note and install cell up to date; returns whether anything changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells[:3]:
        if cell.cell_type == "markdown":
            kept = [line for line in cell.source.split("\n") if BADGE_IMAGE not in line and not line.startswith("**On Colab**")]
            cell.source = "\n".join(kept).rstrip("\n")
    nb.cells[0].source += f"\n\n{badge(path.name)}\n\n{COLAB_NOTE}"
    extras = list(nb.metadata.get("deepke_llm", {}).get("colab_extras", []))
    first_code = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")
    if _is_install_cell(nb.cells[first_code]):
        nb.cells[first_code].source = install_cell(extras)
    else:
        cell = nbformat.v4.new_code_cell(install_cell(extras))
        cell["id"] = CELL_ID
        nb.cells.insert(first_code, cell)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + ("" if after.endswith("\n") else "\n"), encoding="utf-8")
    return after != before


def sync_readme(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]*?/notebooks/(\d\d_[a-z0-9_]+\.ipynb)")
    new = pattern.sub(lambda m: badge_url(m.group(1)), text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    stale = []
    for path in paths + [ROOT / "README.md", ROOT / "README_CN.md"]:
        original = path.read_bytes()
        changed = sync_notebook(path) if path.suffix == ".ipynb" else sync_readme(path)
        if changed:
            stale.append(path.relative_to(ROOT))
            if args.check:
                path.write_bytes(original)
    verb = "out of date" if args.check else "updated"
    print(f"{len(stale)} file(s) {verb}" + "".join(f"\n  {p}" for p in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
