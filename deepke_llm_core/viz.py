"""Pictures where people would rather look than read: training curves, per-type scores, highlighted extractions.

Matplotlib is imported inside each function (no work at import time) with the non-interactive ``Agg`` backend
when no display is set, so the helpers work in notebooks, scripts and CI alike. The extraction pictures are
plain HTML strings with inline CSS: a notebook shows them with ``IPython.display.HTML``, ``save_html`` writes a
standalone page, and they need no JavaScript, so they render the same in JupyterLab, VS Code, Colab and a browser.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import Extraction, Mark, Mention  # noqa: F401 - Mention: the doctests build marks

if TYPE_CHECKING:
    from .tasks import Task

__all__ = ["load_history", "plot_training_history", "plot_rewards", "plot_per_type_f1", "plot_errors", "scores_table",
           "per_type_table", "diff_table", "locate", "highlight_html", "diff_tuples", "diff_html", "save_html"]


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


def plot_rewards(path: str | os.PathLike, out_png: str | os.PathLike | None = None):
    """A GRPO run's mean reward and each of its terms (``rewards/<term>/mean``, unweighted) against the step.

    Returns the matplotlib figure; saved to ``out_png`` when given.
    """
    rows = [r for r in load_history(path) if "reward" in r and "step" in r]
    terms = sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.plot([r["step"] for r in rows], [r["reward"] for r in rows], color="black", linewidth=2, label="reward (weighted sum)")
    for key in terms:
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        axis.plot(*zip(*points), linewidth=1, label=key.split("/")[1].removesuffix("_reward"))
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set_xlabel("step")
    axis.set_ylabel("mean over the step's answers")
    axis.legend(fontsize="small")
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


_ERROR_COLOURS = {"hallucinated": "tab:red", "duplicate": "tab:pink", "type_confusion": "tab:orange",
                  "wrong_relation": "tab:orange", "role_confusion": "tab:purple", "reversed": "tab:brown",
                  "boundary": "tab:olive", "boundary_type": "gold", "spurious": "tab:gray", "missed": "tab:blue"}


def plot_errors(result: dict[str, Any], out_png: str | os.PathLike | None = None, prefix: str = ""):
    """A stacked bar per schema type: its errors by category (``evaluate --errors``; EE: ``prefix="argument_"``).

    Categories that never occur are left out of the legend; each category keeps its colour in every chart.
    """
    per_type = result.get("per_type", result.get("total", {}).get("per_type", {}))
    names = sorted(per_type)
    counts = {n: per_type[n].get("errors") or {} for n in names}
    if names and not any(counts.values()):
        raise ValueError("the result has no error counts: evaluate with errors=True (deepke-llm evaluate --errors)")
    keys = list(dict.fromkeys(k for n in names for k in counts[n] if k.startswith(prefix)))
    keys = [k for k in keys if any(counts[n].get(k) for n in names)]
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(4, 0.6 * len(names) + 3), 3.5))
    bottom = [0] * len(names)
    for key in keys:
        heights = [counts[n].get(key, 0) for n in names]
        colour = next((c for name, c in sorted(_ERROR_COLOURS.items(), key=lambda kv: -len(kv[0]))
                       if key.endswith(name)), "tab:cyan")  # EE keys carry their level: event_missed
        axis.bar(names, heights, bottom=bottom, label=key[len(prefix):], color=colour)
        bottom = [b + h for b, h in zip(bottom, heights)]
    axis.set_ylabel(f"{prefix}errors")
    axis.tick_params(axis="x", rotation=45)
    if keys:
        axis.legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left")
    figure.tight_layout()
    if out_png:
        figure.savefig(out_png, dpi=100)
    return figure


def scores_table(results: dict[str, dict[str, Any]]):
    """One row per named evaluation result (``evaluate``'s ``total``, or a whole result): texts, parse errors and
    the P/R/F1 of every level (``event_``/``argument_`` for EE), as a pandas DataFrame.

    >>> float(scores_table({"run": {"总样本数": 2, "错误数": 0, "P": 50.0, "R": 100.0, "F1": 66.67}}).loc["run", "F1"])
    66.67
    """
    import pandas as pd

    rows = {}
    for name, result in results.items():
        total = result.get("total", result)
        rows[name] = {"texts": total.get("总样本数"), "parse errors": total.get("错误数"),
                      **{k: v for k, v in total.items() if k.endswith(("P", "R", "F1")) and not isinstance(v, dict)}}
    return pd.DataFrame.from_dict(rows, orient="index")


def per_type_table(result: dict[str, Any], prefix: str = ""):
    """``evaluate``'s per-type breakdown as a DataFrame: one row per type, ``tp pred gold P R F1`` of a level.

    >>> table = per_type_table({"per_type": {"person": {"tp": 1, "pred": 2, "gold": 1, "P": 50.0, "R": 100.0, "F1": 66.67}}})
    >>> table.columns.tolist(), float(table.loc["person", "F1"])
    (['tp', 'pred', 'gold', 'P', 'R', 'F1'], 66.67)
    """
    import pandas as pd

    per_type = result.get("per_type", result.get("total", {}).get("per_type", {}))
    columns = ["tp", "pred", "gold", "P", "R", "F1"]
    return pd.DataFrame([[scores.get(prefix + c) for c in columns] for scores in per_type.values()],
                        index=pd.Index(list(per_type), name="type"), columns=columns)


def diff_table(task: "str | Task", predicted: Any, gold: Any, **options: Any):
    """:func:`diff_tuples` as a DataFrame, one row per item: ``level`` (``all``; ``event``/``argument`` for EE),
    ``outcome`` (correct, false positive, missed), ``type`` and the item, counted exactly as ``evaluate`` counts:
    the error breakdown of one text.

    >>> diff_table("NER", {"person": ["Tom", "Ann"]}, [{"entity": "Tom", "entity_type": "person"}]).outcome.tolist()
    ['correct', 'false positive']
    """
    import pandas as pd

    rows = [(prefix.rstrip("_") or "all", _CATEGORIES[outcome][0], item.type, item.describe())
            for prefix, groups in diff_tuples(task, predicted, gold, **options).items()
            for outcome, items in groups.items() for item in items]
    return pd.DataFrame(rows, columns=["level", "outcome", "type", "item"])


# ---- extractions highlighted in their text (HTML) ------------------------------------------------------------------
#
# Model answers carry strings, not offsets, so a string is highlighted at every place it occurs: that is all the
# answer claims. A string that occurs nowhere is listed under "not in text" (a hallucinated or paraphrased span).
# Overlapping highlights are drawn by cutting the text at every span boundary; each piece carries all the spans
# covering it, so nested and crossing spans both stay visible. Every piece of text and every label is HTML-escaped:
# texts and model outputs are user data.


_CATEGORIES = {"correct": ("correct", "hsl(130, 55%, 82%)"), "fp": ("false positive", "hsl(0, 80%, 85%)"),
               "fn": ("false negative (missed)", "hsl(215, 80%, 86%)")}

_STYLE = """<style>
.dk-viz{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;
 line-height:2.1;max-width:60em;color:#222}
.dk-viz .dk-title{font-weight:600;margin:.2em 0}
.dk-viz .dk-text{white-space:pre-wrap;border:1px solid #ddd;border-radius:6px;padding:.4em .7em;background:#fff}
.dk-viz mark{border-radius:3px;padding:.1em 0;color:inherit}
.dk-viz mark.dk-trigger{font-weight:700;text-decoration:underline}
.dk-viz mark.dk-overlap{outline:1px dashed #555}
.dk-viz mark.dk-fn{outline:2px dashed #1565c0;outline-offset:-1px}
.dk-viz .dk-label{font-size:.7em;font-weight:600;color:#fff;border-radius:3px;padding:.05em .35em;margin:0 .2em;
 vertical-align:middle;white-space:nowrap}
.dk-viz ul{margin:.2em 0 .4em 1.2em;padding:0;line-height:1.6}
.dk-viz .dk-missing li{color:#a00}
.dk-viz .dk-note{color:#a00}
</style>"""


def _hue(key: str) -> int:
    """A hue from the key's hash: the same type gets the same colour in every picture and every run."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:6], 16) % 360


def _colours(mark: Mark) -> tuple[str, str]:
    """(highlight background, label background) of a mark: by category in a diff, else by its key."""
    if mark.category:
        return _CATEGORIES[mark.category][1], {"correct": "#2e7d32", "fp": "#c62828", "fn": "#1565c0"}[mark.category]
    hue = _hue(mark.key)
    return f"hsl({hue}, 75%, 84%)", f"hsl({hue}, 55%, 35%)"


def _task(task: "str | Task") -> "Task":
    from .tasks import get_task

    return get_task(task) if isinstance(task, str) else task


def locate(text: str, marks: list[Mark]) -> tuple[list[tuple[int, int, Mark]], list[Mark]]:
    """``(start, end, mark)`` for every place a mark's string is, and the marks whose string is not in the text.

    A mention already aligned (``align.align_extractions``) is drawn where it was found; an unaligned one at every
    place its string occurs (all that a bare answer claims), found as ``align`` finds it (exact, else normalised).

    >>> spans, missing = locate("Tom met Tom.", [Mark(Mention("Tom"), "person", "person"),
    ...                                          Mark(Mention("Bob"), "person", "person")])
    >>> [(s, e) for s, e, _ in spans], [m.text for m in missing]
    ([(0, 3), (8, 11)], ['Bob'])
    """
    from .align import TextIndex

    index = TextIndex(text)
    spans, missing = [], []
    for mark in dict.fromkeys(m for m in marks if m.text):
        mention = mark.mention
        if mention.status == "not_found":
            places = []
        elif mention.start is not None and mention.end is not None:
            places = [(mention.start, mention.end)]
        else:
            places = index.find(mark.text)[0] if isinstance(mark.text, str) and mark.text else []
        spans += [(s, e, mark) for s, e in places]
        if not places:
            missing.append(mark)
    spans.sort(key=lambda span: (span[0], -span[1]))
    return spans, missing


def _label(mark: Mark, span_id: int) -> str:
    """The small coloured tag after a highlight; its data attributes let tests and scripts read the picture back."""
    label = mark.label + (f" \u00b7 {_CATEGORIES[mark.category][0]}" if mark.category else "")
    data = {"mark": f"m{span_id}", "text": mark.text, "type": mark.label, "category": mark.category}
    attributes = " ".join(f'data-{k}="{escape(v)}"' for k, v in data.items() if v)
    return f'<span class="dk-label" {attributes} style="background:{_colours(mark)[1]}">{escape(label)}</span>'


def _render_text(text: str, spans: list[tuple[int, int, Mark]]) -> str:
    """The text cut at every span boundary; each piece is a ``<mark>`` naming all spans over it, labels at span ends."""
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    out = []
    for a, b in zip(cuts, cuts[1:] + [None]):
        out += [_label(m, i) for i, (_, e, m) in enumerate(spans) if e == a]
        if b is None:
            break
        piece = escape(text[a:b])
        over = sorted((i for i, (s, e, _) in enumerate(spans) if s <= a and b <= e), key=lambda i: spans[i][1] - spans[i][0])
        if not over:
            out.append(piece)
            continue
        top = spans[over[0]][2]
        classes = ["dk-mark", f"dk-{top.kind}"] + ([f"dk-{top.category}"] if top.category else []) + (["dk-overlap"] if len(over) > 1 else [])
        title = escape("; ".join(f"{spans[i][2].label}: {spans[i][2].text}" for i in over))
        ids = " ".join(f"m{i}" for i in over)
        out.append(f'<mark class="{" ".join(classes)}" data-mark="{ids}" title="{title}" '
                   f'style="background-color:{_colours(top)[0]}">{piece}</mark>')
    return "".join(out)


def _list(heading: str, lines: list[str], css: str = "") -> str:
    if not lines:
        return ""
    items = "".join(f'<li class="dk-item{" " + css if css else ""}">{escape(line)}</li>' for line in lines)
    return f'<div class="{" ".join(["dk-list", css]).strip()}"><b>{escape(heading)} ({len(lines)})</b><ul>{items}</ul></div>'


def _frame(title: str | None, body: str) -> str:
    head = f'<div class="dk-title">{escape(title)}</div>' if title else ""
    return f'{_STYLE}<div class="dk-viz">{head}{body}</div>'


def _as_dict(extraction: Any, lenient: bool) -> dict | None:
    from .evaluate import parse_json_output

    return parse_json_output(extraction, lenient)


def highlight_html(text: str, task: "str | Task", extraction: Any, title: str | None = None, *,
                   rel_keys: str = "any", lenient: bool = True) -> str:
    """The text with every extracted string highlighted, as an HTML fragment (show it with ``IPython.display.HTML``).

    Args:
        text: the source text.
        task: a task name (``NER``, ``RE``, ``SPO``, ``EE``, ``EET``, ``EEA``, ``KG``) or a :class:`Task`.
        extraction: typed extractions (``extract``'s result), or the model's answer in the task's output format,
            as a dict or as the raw output string.
        title: a heading above the text.
        rel_keys, lenient: as in ``evaluate`` (``lenient`` also reads fenced or slightly broken JSON).

    Entities are coloured by type, relation spans by relation, event triggers by event type and arguments by
    role; every highlight is followed by its label. Extracted strings that do not occur in the text are listed
    under "not in text".

    >>> html = highlight_html("Tom <b> lives in Paris.", "NER", {"person": ["Tom"], "location": ["Rome"]})
    >>> ">Tom</mark>" in html, "&lt;b&gt; lives" in html, "Not in text (1)" in html
    (True, True, True)
    """
    task_obj = _task(task)
    if isinstance(extraction, list):
        items = extraction
    else:
        parsed = _as_dict(extraction, lenient)
        if parsed is None:
            note = '<div class="dk-note">the output is not a JSON object; nothing to highlight</div>'
            return _frame(title, f'<div class="dk-text">{escape(text)}</div>{note}')
        items = task_obj.parse_output(parsed, rel_keys)
    spans, missing = locate(text, [m for item in items for m in item.marks()])
    body = (f'<div class="dk-text">{_render_text(text, spans)}</div>'
            + _list(task_obj.heading, [i.describe() for i in items])
            + _list("Not in text", [f"{m.label}: {m.text}" for m in missing], "dk-missing"))
    return _frame(title, body)


def _gold_items(task: "Task", gold: Any, rel_keys: str) -> list[Extraction]:
    """Gold tuples from a record's ``label`` (list or JSON string) or from an answer-shaped dict."""
    if isinstance(gold, str):
        gold = json.loads(gold)
    return task.gold_tuples(gold) if isinstance(gold, list) else task.parse_output(gold, rel_keys)


def diff_tuples(task: "str | Task", predicted: Any, gold: Any, *, rel_keys: str = "any", match_mode: str = "normal",
                lenient: bool = False) -> dict[str, dict[str, list[Extraction]]]:
    """Correct, false-positive and false-negative items per scoring level, counted exactly as ``evaluate`` counts.

    ``predicted`` is an answer (dict or raw output string; one that does not parse predicts nothing, as a parse
    error does in ``evaluate``); ``gold`` is a record's ``label`` list or an answer-shaped dict. The keys are the
    task's level prefixes (``""``; ``event_`` and ``argument_`` for EE and EEA); items are multisets, or sets with
    ``match_mode="set"``.

    >>> d = diff_tuples("NER", {"person": ["Tom", "Ann"]}, [{"entity": "Tom", "entity_type": "person"},
    ...                                                   {"entity": "Paris", "entity_type": "location"}])
    >>> [[e.describe() for e in d[""][k]] for k in ("correct", "fp", "fn")]
    [['person: Tom'], ['person: Ann'], ['location: Paris']]
    """
    task_obj = _task(task)
    parsed = _as_dict(predicted, lenient)
    pred = task_obj.parse_output(parsed, rel_keys) if parsed is not None else []
    golds = _gold_items(task_obj, gold, rel_keys)
    if match_mode == "set":
        pred, golds = list(dict.fromkeys(pred)), list(dict.fromkeys(golds))
    pred_levels, gold_levels = task_obj.score_levels(pred), task_obj.score_levels(golds)
    result = {}
    for prefix in pred_levels:
        p = Counter(item for _, item in pred_levels[prefix])
        g = Counter(item for _, item in gold_levels.get(prefix, []))
        result[prefix] = {"correct": list((p & g).elements()), "fp": list((p - g).elements()),
                          "fn": list((g - p).elements())}
    return result


def diff_html(text: str, task: "str | Task", predicted: Any, gold: Any, title: str | None = None, *,
              rel_keys: str = "any", match_mode: str = "normal", lenient: bool = False) -> str:
    """Prediction against gold in the text: correct (green), false positives (red), missed gold (blue, dashed).

    The categories are :func:`diff_tuples` (``evaluate``'s matching); EE and EEA show both scoring levels.
    """
    task_obj = _task(task)
    diff = diff_tuples(task_obj, predicted, gold, rel_keys=rel_keys, match_mode=match_mode, lenient=lenient)
    marks, lists = [], []
    for prefix, groups in diff.items():
        level = {"event_": "events: ", "argument_": "arguments: "}.get(prefix, "")
        for category, items in groups.items():
            for item in items:
                marks += [replace(m, category=category) for m in item.marks()]
            lists.append(_list(level + _CATEGORIES[category][0], [i.describe() for i in items],
                               f"dk-{category}"))
    spans, not_found = locate(text, marks)
    note = "" if _as_dict(predicted, lenient) is not None else \
        '<div class="dk-note">the prediction is not a JSON object: it predicts nothing (a parse error)</div>'
    body = (f'<div class="dk-text">{_render_text(text, spans)}</div>{note}' + "".join(lists)
            + _list("Not in text", [f"{m.label} ({_CATEGORIES[m.category][0]}): {m.text}" for m in not_found],
                    "dk-missing"))
    return _frame(title, body)


def save_html(fragment: str, path: str | os.PathLike, title: str = "DeepKE-LLM extraction") -> Path:
    """Write a fragment as a standalone page (UTF-8, inline CSS, no external assets) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = ('<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n</head>\n<body>\n{fragment}\n</body>\n</html>\n")
    path.write_text(page, encoding="utf-8")
    return path
