"""Pictures where people would rather look than read: training curves and per-type scores.

Matplotlib is imported inside each function (no work at import time) with the non-interactive ``Agg`` backend
when no display is set, so the helpers work in notebooks, scripts and CI alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load_history", "plot_training_history", "plot_per_type_f1"]


def load_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``training_history.json`` a fine-tuning run wrote (give the file or the run's folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "training_history.json"
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _pyplot():
    import matplotlib

    if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend().lower():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_history(path: str | os.PathLike, out_png: str | os.PathLike | None = None):
    """Training loss, eval loss and learning rate against the step; saved to ``out_png`` when given.

    Returns the matplotlib figure (shown inline in a notebook).
    """
    rows = load_history(path)
    plt = _pyplot()
    figure, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
        if points:
            ax_loss.plot(*zip(*points), marker="o" if key == "eval_loss" else None, label=label)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    rates = [(r["step"], r["learning_rate"]) for r in rows if "learning_rate" in r and "step" in r]
    if rates:
        ax_lr.plot(*zip(*rates), color="tab:green")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    figure.tight_layout()
    if out_png:
        figure.savefig(out_png, dpi=100)
    return figure


def plot_per_type_f1(result: dict[str, Any], out_png: str | os.PathLike | None = None, prefix: str = ""):
    """A bar per schema type from an evaluation result's ``per_type`` breakdown (``prefix``: ``argument_`` etc.)."""
    per_type = result.get("per_type", result.get("total", {}).get("per_type", {}))
    names = sorted(per_type)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(4, 0.6 * len(names) + 2), 3.5))
    axis.bar(names, [per_type[n].get(prefix + "F1", 0.0) for n in names], color="tab:blue")
    axis.set_ylim(0, 100)
    axis.set_ylabel(prefix + "F1")
    axis.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    if out_png:
        figure.savefig(out_png, dpi=100)
    return figure
