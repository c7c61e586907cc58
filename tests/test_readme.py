"""The two READMEs stay true to the tree: every chapter is listed with its Colab badge (derived from the address
declared in pyproject.toml and the notebook's path, as in the notebooks), every local link resolves."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.test_notebooks import colab_url

READMES = ("README.md", "README_CN.md")
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LOCAL_LINK = re.compile(r"\]\((?!https?://|#)([^)\s]+)\)")


@pytest.mark.parametrize("readme", READMES)
def test_every_chapter_is_in_the_table_with_its_colab_badge(readme):
    text = (ROOT / readme).read_text(encoding="utf-8")
    for stem in NOTEBOOKS:
        assert f"(notebooks/{stem}.ipynb)" in text, f"{readme} does not link chapter {stem}"
        assert f"({colab_url(ROOT / 'notebooks' / f'{stem}.ipynb')})" in text, \
            f"{readme} has no Colab badge for chapter {stem} at the declared address (run: python tools/colab.py)"
    listed = set(re.findall(r"\(notebooks/(\d\d_[a-z_]+)\.ipynb\)", text))
    assert listed <= set(NOTEBOOKS), f"{readme} links chapters that do not exist: {sorted(listed - set(NOTEBOOKS))}"
    badges = re.findall(r"\(https://colab\.research\.google\.com/github/[^)]+/notebooks/([^)/]+)\.ipynb\)", text)
    stale = [b for b in badges if f"({colab_url(ROOT / 'notebooks' / f'{b}.ipynb')})" not in text]
    assert not stale, f"{readme} has Colab badges that are not at the declared address: {stale}"


@pytest.mark.parametrize("readme", READMES)
def test_local_links_resolve(readme):
    text = (ROOT / readme).read_text(encoding="utf-8")
    missing = [link for link in LOCAL_LINK.findall(text) if not (ROOT / link.split("#")[0]).exists()]
    assert not missing, f"{readme} links files that are not in the repository: {missing}"
