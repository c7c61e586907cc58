"""Documents of any length: sentence windows under a token budget, and their extractions merged back.

A model reads a bounded number of tokens, and an IE model is trained on sentences, so a long text is never sent
whole (before this module it was silently shortened to ``cutoff_len``). Instead:

1. the text is cut into sentences after Chinese and English end punctuation (``。！？!?.…`` and a line break; a
   ``.!?`` ends a sentence only before whitespace and not before a lower-case letter, and ``.`` not after an
   initial or a common abbreviation such as ``Dr.``),
   and a sentence longer than the budget is cut at clause punctuation (``，,；;：:、``), then at spaces, then by
   characters;
2. consecutive sentences are packed into *windows* of at most ``window_tokens`` tokens; each window after the first
   starts with the last sentences of the previous one, up to ``overlap_tokens`` tokens, so an entity at a window
   edge is read with its sentence around it in one of the two windows;
3. every window is asked as an ordinary IEPile test instruction (``extract.build_instructions``: the converter,
   with the task's ``split_num``), its answer aligned inside the window (``align``), and its offsets shifted by
   the window's start: offsets into the whole document;
4. the windows' extractions are merged: a mention found at the same place by two overlapping windows is kept
   once, and a string found nowhere is reported once per document.

Splitting is a regular expression rather than a sentence-segmentation library: a window only needs *some*
boundary near the budget, a missed abbreviation costs nothing once windows overlap, and the rule works the same
for Chinese, English and mixed text. Tokens are counted with the engine's tokenizer when it has one, else
estimated (one per CJK character, word or punctuation mark).

>>> text = "Tom met Ann. 张伟加入了华为公司。Dr. Lee left!"
>>> [text[s:e] for s, e in split_sentences(text)]
['Tom met Ann. ', '张伟加入了华为公司。', 'Dr. Lee left!']
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .io import DataError, iter_jsonl
from .records import Extraction

__all__ = ["DEFAULT_WINDOW_TOKENS", "DEFAULT_OVERLAP_TOKENS", "Window", "Document", "split_sentences",
           "estimate_tokens", "token_counter", "make_windows", "shift", "merge_windows", "read_documents"]

DEFAULT_WINDOW_TOKENS = 384  # with the instruction and schema (~100 tokens) this fits infer's cutoff_len of 512
DEFAULT_OVERLAP_TOKENS = 64

_CLOSERS = "\"'”’」』）)】》\\]"
# A full-width or CJK end mark ends a sentence anywhere; an ASCII one only before whitespace (or the end).
_END = re.compile(rf"(?:[。！？…]+|[!?]+(?=[{_CLOSERS}]*(?:\s|$))|\.+(?=[{_CLOSERS}]*(?:\s|$)))[{_CLOSERS}]*\s*|\n\s*")
_CLAUSE = re.compile(r"[，,；;：:、]\s*")
_SPACE = re.compile(r"\s+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "inc", "ltd", "co", "corp", "vs", "etc", "no",
                  "e.g", "i.e", "u.s", "fig", "al", "dept", "gen", "gov", "mt", "sen", "rep", "jan", "feb", "aug",
                  "sep", "sept", "oct", "nov", "dec"}
_ESTIMATE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]|\w+|[^\w\s]")


@dataclass(frozen=True)
class Window:
    """A slice of a document: ``text == document[start:end]``."""

    index: int
    start: int
    end: int
    text: str


@dataclass
class Document:
    """One input document; ``gold`` holds typed gold extractions when the input line carried an annotation."""

    id: Any
    text: str
    gold: list[Extraction] | None = None


def _abbreviation(text: str, dot: int) -> bool:
    """Whether the ``.`` at ``dot`` closes an initial (``J.``) or a common abbreviation (``Dr.``) rather than a sentence."""
    k = dot
    while k > 0 and (text[k - 1].isalpha() or text[k - 1] == "."):
        k -= 1
    word = text[k:dot].lower()
    return (len(word) == 1 and text[k:dot].isupper()) or word in _ABBREVIATIONS


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentences as ``(start, end)`` offsets that cover the whole text (each keeps its trailing whitespace)."""
    spans, start = [], 0
    for match in _END.finditer(text):
        if match.end() <= start:
            continue
        mark = text[match.start()]
        if mark in ".!?" and match.end() < len(text) and text[match.end()].islower():
            continue  # an English sentence starts with a capital: "p.m. in", '"Really?" she asked'
        if mark == "." and _abbreviation(text, match.start()):
            continue
        spans.append((start, match.end()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def estimate_tokens(texts: Sequence[str]) -> list[int]:
    """A tokenizer-free count: one token per CJK character, word or punctuation mark (for endpoints)."""
    return [len(_ESTIMATE.findall(t)) for t in texts]


def token_counter(engine: Any) -> Callable[[Sequence[str]], list[int]]:
    """Token counts with the engine's tokenizer (local engines), else :func:`estimate_tokens`."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        return estimate_tokens

    def count(texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]] if texts else []

    return count


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _cut(text: str, start: int, end: int, budget: int, count: Callable, level: int = 0) -> list[tuple[int, int]]:
    """A too-long span cut into pieces of at most ``budget`` tokens: at clauses, then spaces, then characters."""
    if level >= 2:  # characters: proportional cuts, shrunk until each piece fits
        pieces, at = [], start
        while at < end:
            size = max(1, (end - at) * budget // max(1, count([text[at:end]])[0]))
            while size > 1 and count([text[at:at + size]])[0] > budget:
                size = max(1, size * 3 // 4)
            pieces.append((at, min(end, at + size)))
            at += size
        return pieces
    pattern = (_CLAUSE, _SPACE)[level]
    cuts = [start] + [m.end() for m in pattern.finditer(text, start, end) if start < m.end() < end] + [end]
    parts = list(zip(cuts, cuts[1:]))
    sizes = count([text[a:b] for a, b in parts])
    pieces: list[tuple[int, int]] = []
    for (a, b), size in zip(parts, sizes):
        if size > budget:
            pieces += _cut(text, a, b, budget, count, level + 1)
        elif pieces and pieces[-1][1] == a and count([text[pieces[-1][0]:b]])[0] <= budget:
            pieces[-1] = (pieces[-1][0], b)  # pack clauses back together while they fit
        else:
            pieces.append((a, b))
    return pieces


def make_windows(text: str, window_tokens: int = DEFAULT_WINDOW_TOKENS, overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
                 count: Callable[[Sequence[str]], list[int]] = estimate_tokens,
                 window_sentences: int | None = None) -> list[Window]:
    """The windows of ``text`` (see the module docstring); a text within the budget is one window, the text itself.

    ``window_sentences`` caps the sentences of a window besides its tokens: a model trained on single sentences
    (the tiny IE base, many sentence-level IE models) reads ``window_sentences=1`` best, one sentence at a time.

    >>> [w.text for w in make_windows("One two. Three four. Five six.", window_tokens=6, overlap_tokens=3)]
    ['One two. Three four.', 'Three four. Five six.']
    """
    if window_tokens < 1 or overlap_tokens < 0:
        raise ValueError(f"window_tokens must be positive and overlap_tokens 0 or more, got {window_tokens}, {overlap_tokens}")
    if window_sentences is not None and window_sentences < 1:
        raise ValueError(f"window_sentences must be at least 1 (or None: as many as fit), got {window_sentences}")
    if overlap_tokens >= window_tokens:
        raise ValueError(f"overlap_tokens ({overlap_tokens}) must be smaller than window_tokens ({window_tokens})")
    units = [_trim(text, s, e) for s, e in split_sentences(text)]
    units = [(s, e) for s, e in units if s < e]
    sizes = count([text[s:e] for s, e in units])  # sentence by sentence: a whole book is never tokenized at once
    if sum(sizes) <= window_tokens and len(units) <= (window_sentences or len(units)):
        return [Window(0, 0, len(text), text)]
    if any(size > window_tokens for size in sizes):
        finer: list[tuple[int, int]] = []
        for (s, e), size in zip(units, sizes):
            finer += [_trim(text, a, b) for a, b in _cut(text, s, e, window_tokens, count)] if size > window_tokens else [(s, e)]
        units = [(s, e) for s, e in finer if s < e]
        sizes = count([text[s:e] for s, e in units])
    windows: list[Window] = []
    first = 0
    while first < len(units):
        last, total = first, sizes[first]
        while last + 1 < len(units) and total + sizes[last + 1] <= window_tokens and \
                (window_sentences is None or last + 1 - first < window_sentences):
            last += 1
            total += sizes[last]
        start, end = units[first][0], units[last][1]
        windows.append(Window(len(windows), start, end, text[start:end]))
        if last + 1 >= len(units):
            break
        nxt, overlap = last + 1, 0
        while nxt - 1 > first and overlap + sizes[nxt - 1] <= overlap_tokens:
            nxt -= 1
            overlap += sizes[nxt]
        first = nxt
    return windows


def shift(extraction: Extraction, delta: int) -> Extraction:
    """The extraction with every located mention moved by ``delta`` characters (window -> document offsets)."""
    if not delta:
        return extraction
    return extraction.with_mentions([m.located(m.start + delta, m.end + delta, m.status) if m.start is not None else m
                                     for m in extraction.mentions()])


def _place(extraction: Extraction) -> tuple:
    return tuple((m.start, m.end) for m in extraction.mentions())


def merge_windows(pieces: Iterable[tuple[Window, Sequence[Extraction]]]) -> list[Extraction]:
    """One list for the document: each window's aligned extractions in document offsets, in document order (one
    window keeps its answer's order).

    An extraction that another window already produced at the same place (an entity in the overlap of two
    windows) is dropped, and so is a string found nowhere that another window already reported; repeats within
    one window are the model's own answer and are kept, as ``evaluate`` counts them.
    """
    first_window: dict = {}
    merged: list[Extraction] = []
    windows = 0
    for window, extractions in pieces:
        windows += 1
        for extraction in extractions:
            moved = shift(extraction, window.start)
            key = (moved, _place(moved))
            if first_window.setdefault(key, window.index) == window.index:
                merged.append(moved)

    def order(item: tuple[int, Extraction]) -> tuple:
        starts = [(m.start, m.end) for m in item[1].mentions() if m.start is not None]
        return (0, *min(starts), item[0]) if starts else (1, 0, 0, item[0])

    return merged if windows <= 1 else [e for _, e in sorted(enumerate(merged), key=order)]


def _documents_from_folder(path: str) -> list[dict]:
    names = sorted(n for n in os.listdir(path) if n.endswith(".txt"))
    if not names:
        raise DataError(path, None, None, "no .txt files in this folder")
    records = []
    for name in names:
        try:
            with open(os.path.join(path, name), encoding="utf-8-sig") as handle:
                records.append({"id": name[:-4], "text": handle.read()})
        except UnicodeDecodeError:
            raise DataError(os.path.join(path, name), None, None, "not UTF-8; save the file as UTF-8") from None
    return records


def read_documents(path: str, task: Any = None, schema: Any = None) -> list[Document]:
    """Documents from JSON Lines (``{"id", "text"}``, optionally the task's raw annotation such as ``entity``) or a
    folder of ``.txt`` files (the id is the file name without ``.txt``). Errors name the file, line and field."""
    if os.path.isdir(path):
        raw = list(enumerate(_documents_from_folder(path), start=1))
        located = False
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: input file not found")
        raw = list(iter_jsonl(path))
        located = True
    documents, ids = [], set()
    for number, record in raw:
        line = number if located else None
        if not isinstance(record, dict):
            raise DataError(path, line, None, 'expected a JSON object {"id", "text"}')
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, line, "text", "missing or empty" if not isinstance(text, str) or not text else "only whitespace")
        doc_id = record.get("id", number)
        if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
            raise DataError(path, line, "id", f"expected a string or an integer, got {type(doc_id).__name__}")
        if doc_id in ids:
            raise DataError(path, line, "id", f"{doc_id!r} is a duplicate (each document needs its own id)")
        ids.add(doc_id)
        gold = None
        if task is not None and task.annotation_field in record:
            try:
                task.read_annotation(record, schema)  # checked as convert checks it ...
            except DataError as exc:
                raise DataError(path, line, exc.field, exc.reason) from None
            gold = task.gold_tuples(record[task.annotation_field])  # ... but a name mentioned twice is two mentions
        documents.append(Document(doc_id, text, gold))
    if not documents:
        raise DataError(path, None, None, "no documents")
    return documents
