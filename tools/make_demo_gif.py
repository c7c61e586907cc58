"""Record ``docs/demo.gif``: notebook 10's extraction app in JupyterLab, typed into and clicked in headless Chromium.

The browser steps are the ones ``tests/test_browser.py`` checks (``tests/browser_driver.py``); this script only
takes a screenshot at each step and joins them into an animated GIF with Pillow (already installed: matplotlib
depends on it). Run it from the repository root, with Debian's ``chromium`` installed (``fonts-noto-cjk`` too, if
the page should show Chinese glyphs)::

    .venv/bin/python -m tools.make_demo_gif            # writes docs/demo.gif
    .venv/bin/python -m tools.make_demo_gif --out /tmp/demo.gif --width 960
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from tests.browser_driver import DEMO_SENTENCE, ROOT, copy_notebook, jupyter_lab, run_app

# How long each kind of frame stays on screen, in milliseconds (the result is held longest).
DURATIONS = {"opened": 1200, "diff": 3000, "ran": 1800, "typing": 350, "typed": 700, "clicked": 700, "extracted": 4500}
MAX_BYTES = 2 * 1024 * 1024


def record(width: int, height: int) -> list[tuple[str, bytes]]:
    """PNG screenshots of the app's steps, in order."""
    frames: list[tuple[str, bytes]] = []
    with tempfile.TemporaryDirectory(prefix="deepke-demo-") as folder:
        with jupyter_lab(Path(folder)) as lab:
            run_app(lab, copy_notebook(Path(folder)), DEMO_SENTENCE, expect="Sarah Allen", viewport=(width, height),
                    type_delay_ms=25, snap=lambda step, page: frames.append((step, page.screenshot())))
    return frames


def assemble(frames: list[tuple[str, bytes]], out: Path, scale: float = 1.0, colours: int = 128) -> int:
    """An endlessly looping GIF, one adaptive palette per frame; returns its size in bytes."""
    from PIL import Image

    images = []
    for _, png in frames:
        image = Image.open(io.BytesIO(png)).convert("RGB")
        if scale != 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        images.append(image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(out, save_all=True, append_images=images[1:], duration=[DURATIONS.get(s, 800) for s, _ in frames],
                   loop=0, optimize=True)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "demo.gif")
    parser.add_argument("--width", type=int, default=1100, help="browser viewport width in pixels")
    parser.add_argument("--height", type=int, default=760, help="browser viewport height in pixels")
    parser.add_argument("--scale", type=float, default=0.8, help="shrink the screenshots by this factor")
    args = parser.parse_args(argv)
    frames = record(args.width, args.height)
    size = assemble(frames, args.out, args.scale)
    for colours in (64, 32):  # still too big: fewer colours (text stays legible; the highlights are flat colours)
        if size <= MAX_BYTES:
            break
        size = assemble(frames, args.out, args.scale, colours)
    print(f"{args.out}: {len(frames)} frames, {size / 1024:.0f} KiB")
    if size > MAX_BYTES:
        raise SystemExit(f"{args.out} is {size} bytes, over {MAX_BYTES}: pass a smaller --scale or --width")


if __name__ == "__main__":
    main()
