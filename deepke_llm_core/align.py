"""Ground extractions in their text: character offsets for every extracted string, or ``not_found``.

A model answers with strings, not offsets; this module finds them. Each mention gets ``start``/``end`` and a
``status``: ``exact`` where the string occurs, ``not_found`` where it does not (a hallucinated or paraphrased
span). Repeated strings take successive occurrences in the order the extractions name them, so two mentions of
``Tom`` in an answer land on the two places ``Tom`` occurs.

>>> from deepke_llm_core.records import Entity
>>> [(e.text.start, e.text.status) for e in align_extractions([Entity.of("Tom", "person"), Entity.of("Tom", "person"),
...                                                             Entity.of("Bob", "person")], "Tom met Tom.")]
[(0, 'exact'), (8, 'exact'), (None, 'not_found')]
"""

from __future__ import annotations

from collections.abc import Sequence

from .records import Extraction, Mention

__all__ = ["occurrences", "align_extractions"]


def occurrences(text: str, needle: str) -> list[tuple[int, int]]:
    """Every non-overlapping occurrence of ``needle``, as character offsets (Chinese works as English)."""
    found, start = [], text.find(needle) if needle else -1
    while start >= 0:
        found.append((start, start + len(needle)))
        start = text.find(needle, start + len(needle))
    return found


def align_extractions(extractions: Sequence[Extraction], text: str) -> list[Extraction]:
    """The extractions with every mention located in ``text`` (see the module docstring)."""
    places: dict[str, list[tuple[int, int]]] = {}
    used: dict[str, int] = {}
    aligned = []
    for extraction in extractions:
        mentions = []
        for mention in extraction.mentions():
            value = mention.text
            if not isinstance(value, str) or not value:
                mentions.append(mention)
                continue
            spots = places.setdefault(value, occurrences(text, value))
            if not spots:
                mentions.append(Mention(value, status="not_found"))
                continue
            k = used.get(value, 0)
            used[value] = k + 1
            start, end = spots[min(k, len(spots) - 1)]  # more mentions than occurrences: they share the last one
            mentions.append(mention.located(start, end))
        aligned.append(extraction.with_mentions(mentions))
    return aligned
