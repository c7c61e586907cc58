"""Where the repository's bundled files are: the sample data, and the committed tiny IE base.

Found relative to the package (a source checkout or an editable install), never relative to the current
directory; the error says what to pass instead when they are not there.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["data_dir"]


def data_dir() -> Path:
    """The repository's ``data/`` folder (samples and schemas for every task, zh and en)."""
    path = Path(__file__).resolve().parents[1] / "data"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: sample data not found; pass the path of the repository's data/ folder")
    return path
