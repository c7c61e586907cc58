"""Drive notebook 10's extraction app in JupyterLab with headless Chromium (playwright).

Shared by ``tests/test_browser.py`` (asserts on the page) and ``tools/make_demo_gif.py`` (screenshots the same
steps). JupyterLab runs as a child process on 127.0.0.1 at a free port with a random token, in a folder of its own
with its own settings, so nothing of the user's Jupyter setup is read or written. The browser is the system's
Chromium (Debian's ``chromium`` package); playwright only drives it, so ``playwright install`` is never needed.
Imports of playwright happen inside the functions: collecting this module needs nothing extra.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "10_interactive_extraction.ipynb"
# Both names are held out of the tiny base's training: it reads them off the sentence.
DEMO_SENTENCE = "Sarah Allen joined Meridian Systems as an engineer in June 2018."
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

# JupyterLab settings for a scripted session: every cell in the DOM (no virtual scrolling, so the app's widget
# can be found however long the notebook is), no news or update pop-ups over the page.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}

Snap = Callable[[str, Any], None]  # (step name, playwright page) -> None


@dataclass
class Lab:
    """A running JupyterLab: where it serves, the token, and the folder it serves."""

    url: str
    token: str
    root: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, token: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with status {process.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"jupyter lab did not answer at {url} within {timeout:.0f}s")


@contextmanager
def jupyter_lab(root: Path, timeout: float = 60.0, log: Path | None = None) -> Iterator[Lab]:
    """Serve ``root`` with JupyterLab (this interpreter's), yield it, then stop it and its kernels."""
    root = Path(root)
    settings = root / ".lab-settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / ".lab-workspaces"),
           "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config"), "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime"),
           "JUPYTER_DATA_DIR": str(root / ".jupyter-data")}
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI often run as root; Jupyter refuses by default
        command.append("--allow-root")
    out = open(log or root / "jupyter.log", "wb")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, token, process, timeout)
        yield Lab(url, token, root)
    finally:
        _stop(process)
        out.close()


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies, even if that one is killed outright
    (a test run stopped by a timeout would otherwise leave JupyterLab and its kernel running)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and the kernels it started (its own process group, by id)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def copy_notebook(root: Path, notebook: Path = NOTEBOOK) -> str:
    """Copy the chapter into the served folder (the repository's file is never opened for writing); its name."""
    shutil.copy(notebook, Path(root) / notebook.name)
    return notebook.name


# The notebook panel is loaded (its cells are in the DOM) and its kernel has started and is idle.
_NOTEBOOK_READY = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = panel && panel.sessionContext && panel.sessionContext.session;
  return Boolean(panel && panel.context && panel.context.isReady && panel.content.widgets.length > 1
                 && session && session.kernel && session.kernel.status === 'idle');
}"""

_READ_BACK = """() => {
  const app = document.querySelector('.deepke-extractor');
  const labels = [...app.querySelectorAll('.dk-label')].map(l => ({text: l.dataset.text, type: l.dataset.type,
      marked: [...app.querySelectorAll('mark.dk-mark')].filter(m => m.dataset.mark.split(' ').includes(l.dataset.mark))
                 .map(m => m.textContent).join('')}));
  const missing = [...app.querySelectorAll('.dk-missing li')].map(li => li.textContent);
  const status = app.querySelector('.dk-done, .dk-error');
  return {labels, missing, status: status ? status.textContent : null, json: (app.querySelector('.dk-json') || {}).textContent};
}"""


def run_app(lab: Lab, notebook: str, sentence: str, expect: str, *, snap: Snap | None = None,
            viewport: tuple[int, int] = (1280, 860), type_delay_ms: int = 0, timeout_s: float = 80.0) -> dict:
    """Open the notebook, run all cells, type ``sentence`` into the app, click Extract and read the result back.

    Waits until a highlight labelled with the text ``expect`` appears (or an error is shown). Returns
    ``{"labels": [{"text", "type", "marked"}], "missing": [...], "status": ..., "json": ...}`` as read from the DOM:
    ``marked`` is the text inside the ``<mark>`` elements of that highlight.
    """
    from playwright.sync_api import sync_playwright

    snap = snap or (lambda step, page: None)
    timeout_ms = timeout_s * 1000
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(timeout_ms)
            page.goto(f"{lab.url}/lab/tree/{notebook}?token={lab.token}")
            page.wait_for_function(_NOTEBOOK_READY)
            page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the file browser: room for the notebook
            snap("opened", page)
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")  # not awaited
            text_box = page.locator(".deepke-extractor textarea").first
            text_box.wait_for(state="visible")
            diff = page.locator(".jp-OutputArea-output .dk-viz:has(.dk-fp)").first  # section 3: prediction vs gold
            diff.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            snap("diff", page)
            text_box.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            snap("ran", page)
            if type_delay_ms:  # type like a person, a few words per screenshot
                text_box.click()
                words = sentence.split(" ")
                for start in range(0, len(words), 3):
                    text_box.press_sequentially(" ".join(words[start:start + 3]) + (" " if start + 3 < len(words) else ""),
                                                delay=type_delay_ms)
                    snap("typing", page)
            else:
                text_box.fill(sentence)
            text_box.press("Tab")  # leave the box: the widget syncs its value on change as well as on input
            snap("typed", page)
            page.locator(".deepke-extractor button", has_text="Extract").click()
            snap("clicked", page)
            page.wait_for_function(
                "(expect) => document.querySelector(`.deepke-extractor .dk-label[data-text=\"${expect}\"]`)"
                " || document.querySelector('.deepke-extractor .dk-error')", arg=expect)
            page.locator(".deepke-extractor .dk-viz").first.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            snap("extracted", page)
            return page.evaluate(_READ_BACK)
        finally:
            browser.close()
