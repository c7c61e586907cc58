"""Ground extractions in their text: every mention of every extracted string, with character offsets.

A model answers with strings, not offsets; this module finds them, and it is the one alignment in the project
(``extract``, ``deepke-llm extract`` on documents, ``infer --ground``, ``evaluate --grounded_only`` and the HTML
views all call it). Each mention gets ``start``/``end`` (Python string offsets: one per code point, so Chinese,
emoji and full-width punctuation count as one character each) and a ``status``:

* ``exact``: ``text[start:end]`` is the string;
* ``fuzzy``: the string occurs once whitespace runs, letter case and character width are normalised (Unicode
  NFKC: ``Ｔｏｍ`` = ``Tom``, ``（北京）`` = ``(北京)``); ``text[start:end]`` is the text's own spelling;
* ``not_found``: it occurs nowhere, even normalised (a hallucinated or paraphrased span), or it is blank.

Repeated strings: the k-th time an answer names a string it takes the string's k-th occurrence, so two ``Tom`` in
an answer land on the two places ``Tom`` occurs; with ``every_mention`` an entity-like extraction (one string)
gets one copy per occurrence, so an answer that names ``Tom`` once still marks every ``Tom`` in the text. In Latin
script an occurrence inside a longer word (``Tom`` in ``Tomas``) is used only when there is no whole-word one.
The other strings of a relation or event take the occurrence nearest to their first string, within its sentence
when the sentence has one.

Cost: linear in the text length whatever the number of strings: all of an answer's strings are looked up in one
pass over the text (an Aho-Corasick automaton, ``pyahocorasick``), and the strings not found as they are in one
pass over the normalised text, which is built once and only when needed (``bench/align.py`` times a
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

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
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
    one input character; runs of whitespace become one space, leading and trailing whitespace is dropped. Stretches
    where every character folds to exactly one character (nearly all text) are translated in C (``str.translate``);
    only whitespace runs and characters that fold to several characters (``ß``, ``ﬁ``) go through Python.
    """
    table: dict[int, str] = {}
    irregular: list[str] = []
    for char in set(text):
        if char == " ":
            continue
        folded = _fold(char)
        if char.isspace() or folded.isspace() or len(folded) != 1:
            irregular.append(char)
        elif folded != char:
            table[ord(char)] = folded
    runs = " {2,}"  # a single space between two words maps to itself
    if irregular:
        runs = "(?: *[" + "".join(re.escape(c) for c in sorted(irregular)) + "] *)+|" + runs
    out: list[str] = []
    origin: list[int] = []
    space, at = True, 0  # ``space``: the last character written is a space (or nothing is written yet)
    for match in re.finditer(runs, text):
        if at < match.start():
            out.append(text[at:match.start()].translate(table))
            origin.extend(range(at, match.start()))
            space = text[match.start() - 1] == " "
        for i in range(match.start(), match.end()):
            folded = _fold(text[i])
            if text[i].isspace() or folded.isspace():
                if not space:
                    out.append(" ")
                    origin.append(i)
                    space = True
                continue
            out.append(folded)
            origin.extend([i] * len(folded))
            space = False
        at = match.end()
    if at < len(text):
        out.append(text[at:].translate(table))
        origin.extend(range(at, len(text)))
    joined = "".join(out)
    lead = len(joined) - len(joined.lstrip(" "))
    kept = len(joined.rstrip(" ")) - lead
    return joined[lead:lead + kept], origin[lead:lead + max(kept, 0)]


def normalize(text: str) -> str:
    """What two strings must share to match fuzzily: NFKC width, case folding, whitespace runs as one space.

    >>> normalize("  ＡＢＣ\\u3000Ｄｅｆ（北京） ")
    'abc def(北京)'
    """
    return _normalized(text)[0]


_LATIN = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _scan(text: str, needles: Sequence[str]) -> list[list[Span]]:
    """Every non-overlapping occurrence of each needle, in one pass over the text whatever the number of needles.

    An Aho-Corasick automaton (pyahocorasick, a maintained C extension) reports every match, overlapping ones
    included, in order of their end; keeping, per needle, each match that starts after the previous one kept ends
    gives exactly ``re.finditer``'s leftmost non-overlapping matches of that needle.
    """
    if not needles or not text:
        return [[] for _ in needles]
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for number, needle in enumerate(needles):
        automaton.add_word(needle, (number, len(needle)))
    automaton.make_automaton()
    places: list[list[Span]] = [[] for _ in needles]
    free = [0] * len(needles)  # where the next match of each needle may start
    for last, (number, size) in automaton.iter(text):
        start = last - size + 1
        if start >= free[number]:
            places[number].append((start, last + 1))
            free[number] = last + 1
    return places


def _whole_words(text: str, needle: str, places: list[Span]) -> list[Span]:
    """The places not inside a longer Latin word, when the needle starts or ends with a Latin letter or digit;
    all places when none is a whole word (a partial match is better than none)."""
    if not places or not (needle[0] in _LATIN or needle[-1] in _LATIN):
        return places
    head, tail = needle[0] in _LATIN, needle[-1] in _LATIN
    size = len(text)
    whole = [(s, e) for s, e in places
             if not (head and s and text[s - 1] in _LATIN) and not (tail and e < size and text[e] in _LATIN)]
    return whole or places


def occurrences(text: str, needle: str) -> list[Span]:
    """Every non-overlapping exact occurrence of ``needle``, in order (whole words preferred, see the module doc)."""
    return _whole_words(text, needle, _scan(text, [needle])[0]) if needle else []


class TextIndex:
    """One text prepared for many look-ups: one scan for a whole batch of strings (:meth:`prepare`), results
    cached per string, the normalised text built only when some string is not found as it is."""

    def __init__(self, text: str):
        self.text = text
        self._found: dict[str, tuple[list[Span], str]] = {}
        self._norm: tuple[str, list[int]] | None = None
        self._sentences: list[int] | None = None

    def sentence_of(self, position: int) -> int:
        """The number of the sentence (``documents.split_sentences``) that ``position`` falls in."""
        if self._sentences is None:
            from .documents import split_sentences

            self._sentences = [start for start, _ in split_sentences(self.text)]
        return bisect_right(self._sentences, position) - 1

    def prepare(self, needles: Iterable[str]) -> None:
        """Look up every new string of ``needles``: one scan of the text, then one of the normalised text for the
        strings not found as they are."""
        todo = [n for n in dict.fromkeys(needles) if isinstance(n, str) and n not in self._found]
        if "" in todo:
            todo.remove("")
            self._found[""] = ([], "not_found")
        missing = []
        for needle, places in zip(todo, _scan(self.text, todo)):
            places = _whole_words(self.text, needle, places)
            if places:
                self._found[needle] = (places, "exact")
            else:
                missing.append(needle)
        if not missing:
            return
        if self._norm is None:
            self._norm = _normalized(self.text)
        folded, origin = self._norm
        targets = {needle: normalize(needle) for needle in missing}
        distinct = [t for t in dict.fromkeys(targets.values()) if t]
        scanned = dict(zip(distinct, _scan(folded, distinct)))
        for needle, target in targets.items():
            places = _whole_words(folded, target, scanned[target]) if target else []  # "" once normalised: " "
            self._found[needle] = ([(origin[s], origin[e - 1] + 1) for s, e in places], "fuzzy") if places \
                else ([], "not_found")

    def find(self, needle: str) -> tuple[list[Span], str]:
        """``(places, status)``: every exact occurrence (``exact``), else every normalised one (``fuzzy``), else
        ``([], "not_found")``."""
        if needle not in self._found:
            self.prepare([needle])
        return self._found[needle]


def _alignable(mention: Mention) -> bool:
    return isinstance(mention.text, str) and bool(mention.text.strip())


def _blank(mention: Mention) -> bool:
    """An empty or blank string (``"organization": [""]``): nothing to find, so it is reported as not in the text."""
    return isinstance(mention.text, str) and not mention.text.strip()


def _nearest(places: list[Span], anchor: int, index: "TextIndex") -> Span:
    """The place in the anchor's sentence closest to it, else the closest place (places are sorted by start)."""
    sentence = index.sentence_of(anchor)
    same = [p for p in places if index.sentence_of(p[0]) == sentence]
    if same:
        places = same
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
    index.prepare(m.text for e in extractions for m in e.mentions() if _alignable(m))
    used: dict[str, int] = {}
    expanded: set[Extraction] = set()
    aligned: list[Extraction] = []
    for extraction in extractions:
        mentions = tuple(Mention(m.text, status="not_found") if _blank(m) else m for m in extraction.mentions())
        if every_mention and len(mentions) == 1 and _alignable(mentions[0]):
            if extraction in expanded:
                continue
            expanded.add(extraction)
            places, status = index.find(mentions[0].text)
            if not places:
                aligned.append(extraction.with_mentions([Mention(mentions[0].text, status="not_found")]))
            aligned += [extraction.with_mentions([Mention(mentions[0].text, s, e, status)]) for s, e in places]
            continue
        located: list[Mention] = []
        anchor: int | None = None
        for mention in mentions:
            if not _alignable(mention):
                located.append(mention)  # a blank one is already marked not found
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
                start, end = _nearest(places, anchor, index)
            located.append(mention.located(start, end, status))
        aligned.append(extraction.with_mentions(located))
    return aligned


def not_in_text(extraction: Extraction, text: str | TextIndex) -> bool:
    """Whether some string of ``extraction`` occurs nowhere in ``text``, not even normalised (a hallucination)."""
    index = text if isinstance(text, TextIndex) else TextIndex(text)
    return any(_blank(m) or _alignable(m) and not index.find(m.text)[0] for m in extraction.mentions())
