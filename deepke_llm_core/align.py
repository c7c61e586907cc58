"""Ground extractions in their text: every mention of every extracted string, with character offsets.

A model answers with strings, not offsets; this module finds them, and it is the one alignment in the project
(``extract``, ``deepke-llm extract`` on documents, ``infer --ground``, ``evaluate --grounded_only`` and the HTML
views all call it). Each mention gets ``start``/``end`` (Python string offsets: one per code point, so Chinese,
emoji and full-width punctuation count as one character each) and a ``status``:

* ``exact``: ``text[start:end]`` is the string;
* ``fuzzy``: the string occurs once whitespace runs, letter case and character width are normalised (Unicode
  NFKC: ``Ｔｏｍ`` = ``Tom``, ``（北京）`` = ``(北京)``); ``text[start:end]`` is the text's own spelling;
* ``not_found``: it occurs nowhere, even normalised (a hallucinated or paraphrased span).

Repeated strings: the k-th time an answer names a string it takes the string's k-th occurrence, so two ``Tom`` in
an answer land on the two places ``Tom`` occurs; with ``every_mention`` an entity-like extraction (one string)
gets one copy per occurrence, so an answer that names ``Tom`` once still marks every ``Tom`` in the text. In Latin
script an occurrence inside a longer word (``Tom`` in ``Tomas``) is used only when there is no whole-word one.
The other strings of a relation or event take the occurrence nearest to their first string.

Cost: one pass of ``str.find`` (C speed) over the text per *distinct* string, and one normalisation pass over the
text only when some string is not found exactly: linear in the text length (``bench/align.py`` times a
100,000-character document with 1,000 extractions).

>>> from deepke_llm_core.records import Entity
>>> [(e.text.start, e.text.status) for e in align_extractions([Entity.of("Tom", "person"), Entity.of("Tom", "person"),
...                                                             Entity.of("Bob", "person")], "Tom met Tom.")]
[(0, 'exact'), (8, 'exact'), (None, 'not_found')]
>>> [(e.text.start, e.text.status) for e in align_extractions([Entity.of("tom", "person")], "Tom met Tom.",
...                                                            every_mention=True)]
[(0, 'fuzzy'), (8, 'fuzzy')]
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left
from collections.abc import Sequence
from functools import lru_cache

from .records import Extraction, Mention

__all__ = ["normalize", "occurrences", "TextIndex", "align_extractions", "not_in_text"]

Span = tuple[int, int]


@lru_cache(maxsize=65536)
def _fold(char: str) -> str:
    """One character as the fuzzy match compares it: NFKC (full width -> half width), case-folded."""
    return unicodedata.normalize("NFKC", char).casefold()


def _normalized(text: str) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index of the original character it came from.

    Characters are folded one by one (not NFKC over the whole string) so every output character maps back to exactly
    one input character; runs of whitespace become one space, leading and trailing whitespace is dropped.
    """
    out: list[str] = []
    origin: list[int] = []
    space = True  # drop leading whitespace
    for i, char in enumerate(text):
        if char.isspace():
            if not space:
                out.append(" ")
                origin.append(i)
                space = True
            continue
        folded = _fold(char)
        if folded.isspace():  # e.g. NFKC of a no-break space
            if not space:
                out.append(" ")
                origin.append(i)
                space = True
            continue
        for piece in folded:
            out.append(piece)
            origin.append(i)
        space = False
    if out and out[-1] == " ":
        out.pop()
        origin.pop()
    return "".join(out), origin


def normalize(text: str) -> str:
    """What two strings must share to match fuzzily: NFKC width, case folding, whitespace runs as one space.

    >>> normalize("  ＡＢＣ\\u3000Ｄｅｆ（北京） ")
    'abc def(北京)'
    """
    return _normalized(text)[0]


def _word_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _all_places(text: str, needle: str) -> list[Span]:
    found, start = [], text.find(needle) if needle else -1
    while start >= 0:
        found.append((start, start + len(needle)))
        start = text.find(needle, start + len(needle))
    return found


def _whole_words(text: str, needle: str, places: list[Span]) -> list[Span]:
    """The places not inside a longer Latin word, when the needle starts or ends with a Latin letter or digit;
    all places when none is a whole word (a partial match is better than none)."""
    if not places or not (_word_char(needle[0]) or _word_char(needle[-1])):
        return places
    whole = [(s, e) for s, e in places
             if not (_word_char(needle[0]) and s > 0 and _word_char(text[s - 1]))
             and not (_word_char(needle[-1]) and e < len(text) and _word_char(text[e]))]
    return whole or places


def occurrences(text: str, needle: str) -> list[Span]:
    """Every non-overlapping exact occurrence of ``needle``, in order (whole words preferred, see the module doc)."""
    return _whole_words(text, needle, _all_places(text, needle))


class TextIndex:
    """One text prepared for many look-ups: results cached per string, the normalised text built only if needed."""

    def __init__(self, text: str):
        self.text = text
        self._found: dict[str, tuple[list[Span], str]] = {}
        self._norm: tuple[str, list[int]] | None = None

    def find(self, needle: str) -> tuple[list[Span], str]:
        """``(places, status)``: every exact occurrence (``exact``), else every normalised one (``fuzzy``), else
        ``([], "not_found")``."""
        hit = self._found.get(needle)
        if hit is None:
            places = occurrences(self.text, needle)
            hit = (places, "exact") if places else self._fuzzy(needle)
            self._found[needle] = hit
        return hit

    def _fuzzy(self, needle: str) -> tuple[list[Span], str]:
        target = normalize(needle)
        if not target:
            return [], "not_found"
        if self._norm is None:
            self._norm = _normalized(self.text)
        folded, origin = self._norm
        places = [(origin[s], origin[e - 1] + 1) for s, e in _whole_words(folded, target, _all_places(folded, target))]
        return (places, "fuzzy") if places else ([], "not_found")


def _alignable(mention: Mention) -> bool:
    return isinstance(mention.text, str) and bool(mention.text)


def _nearest(places: list[Span], anchor: int) -> Span:
    """The place whose start is closest to ``anchor`` (places are sorted by start)."""
    k = bisect_left(places, (anchor, -1))
    candidates = places[max(0, k - 1):k + 1]
    return min(candidates, key=lambda p: (abs(p[0] - anchor), p[0]))


def align_extractions(extractions: Sequence[Extraction], text: str, *, every_mention: bool = False,
                      index: TextIndex | None = None) -> list[Extraction]:
    """The extractions with every mention located in ``text`` (see the module docstring).

    Args:
        extractions: typed extractions, in answer order.
        text: the text they were extracted from.
        every_mention: give an extraction with a single string (an entity, an argument, an EET trigger) one copy
            per occurrence of its string, in text order; repeated copies of it in the answer collapse into those.
        index: a :class:`TextIndex` of ``text`` to reuse across calls.
    """
    index = index or TextIndex(text)
    used: dict[str, int] = {}
    expanded: set[Extraction] = set()
    aligned: list[Extraction] = []
    for extraction in extractions:
        mentions = extraction.mentions()
        if every_mention and len(mentions) == 1 and _alignable(mentions[0]):
            if extraction in expanded:
                continue
            expanded.add(extraction)
            places, status = index.find(mentions[0].text)
            if not places:
                aligned.append(extraction.with_mentions([Mention(mentions[0].text, status="not_found")]))
            aligned += [extraction.with_mentions([mentions[0].located(s, e, status)]) for s, e in places]
            continue
        located: list[Mention] = []
        anchor: int | None = None
        for mention in mentions:
            if not _alignable(mention):
                located.append(mention)
                continue
            places, status = index.find(mention.text)
            if not places:
                located.append(Mention(mention.text, status="not_found"))
                continue
            if anchor is None:
                k = used.get(mention.text, 0)
                used[mention.text] = k + 1
                start, end = places[min(k, len(places) - 1)]  # named more often than it occurs: they share the last
                anchor = start
            else:
                start, end = _nearest(places, anchor)
            located.append(mention.located(start, end, status))
        aligned.append(extraction.with_mentions(located))
    return aligned


def not_in_text(extraction: Extraction, text: str | TextIndex) -> bool:
    """Whether some string of ``extraction`` occurs nowhere in ``text``, not even normalised (a hallucination)."""
    index = text if isinstance(text, TextIndex) else TextIndex(text)
    return any(_alignable(m) and not index.find(m.text)[0] for m in extraction.mentions())
