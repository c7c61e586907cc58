"""Notebook 10's app in a real browser: JupyterLab + headless Chromium, type a sentence, click Extract, read the page.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the dev extra (jupyterlab, ipywidgets,
playwright). Skipped without ``/usr/bin/chromium`` unless ``DEEPKE_LLM_REQUIRE_BROWSER=1``, where it fails instead
(CI sets it, so a missing browser cannot pass silently).
"""

from __future__ import annotations

import os
import time

import pytest

from tests.browser_driver import CHROMIUM, DEMO_SENTENCE, copy_notebook, jupyter_lab, run_app


def _require(what: str, present: bool) -> None:
    if present:
        return
    if os.environ.get("DEEPKE_LLM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} is missing and DEEPKE_LLM_REQUIRE_BROWSER=1")
    pytest.skip(f"{what} is missing (install it, or set DEEPKE_LLM_REQUIRE_BROWSER=1 to make this a failure)")


@pytest.mark.slow
def test_the_app_highlights_what_the_tiny_base_extracts(tmp_path):
    _require(f"{CHROMIUM} (apt-get install -y chromium)", CHROMIUM.exists())
    for module in ("playwright", "jupyterlab", "ipywidgets"):
        try:
            __import__(module)
        except ImportError:
            _require(f"the python package {module} (pip install -e '.[dev]')", False)
    start = time.monotonic()
    with jupyter_lab(tmp_path) as lab:
        page = run_app(lab, copy_notebook(tmp_path), DEMO_SENTENCE, expect="Sarah Allen")
    assert page["status"] == "done", page
    highlighted = {(label["marked"], label["type"]) for label in page["labels"]}
    assert ("Sarah Allen", "person") in highlighted and ("Meridian Systems", "organization") in highlighted
    assert all(label["marked"] == label["text"] for label in page["labels"])  # the highlight covers the whole span
    assert '"Sarah Allen"' in page["json"]
    assert time.monotonic() - start < 90
