"""Alignment speed: a 100,000-character document with 1,000 extractions, and how the time grows with the text.

The document alternates Chinese and English paragraphs of synthetic sentences (``synthetic.make_document``). The 1,000 extractions
are *distinct* strings (the costly case: each distinct string is one scan of the text): 850 spans cut from the
text at random, 100 of them with another case or full-width letters (found by the normalised pass, ``fuzzy``)
and 50 strings that occur nowhere. Printed: seconds for ``align_extractions`` (k-th occurrence, and with
``every_mention``), against a baseline measured in the same run, the old grounding (``str.find`` of the first
occurrence of each string, no normalisation) and the old alignment (every exact occurrence, a ``str.find`` loop),
then seconds at 25k, 50k, 100k and 200k characters with the same
extractions: linear in the text length means the seconds double with the text::

    python bench/align.py [--chars 100000] [--extractions 1000]
"""

from __future__ import annotations

import argparse
import random
import time


def document(chars: int, seed: int = 0) -> str:
    from deepke_llm_core.synthetic import make_document

    zh = make_document("NER", "zh", chars // 2, seed=seed)["text"]
    en = make_document("NER", "en", chars // 2, seed=seed)["text"]
    paragraphs = [piece for k in range(0, max(len(zh), len(en)), 1000) for piece in (zh[k:k + 1000], en[k:k + 1000])]
    return "\n".join(paragraphs)[:chars]


def extractions(text: str, n: int, seed: int = 0) -> list:
    from deepke_llm_core.records import Entity

    rng = random.Random(seed)
    strings: dict[str, None] = {}
    fuzzy = n // 10
    missing = n // 20
    while len(strings) < n - fuzzy - missing:
        start = rng.randrange(len(text) - 12)
        piece = text[start:start + rng.randint(2, 12)].strip()
        if piece:
            strings.setdefault(piece)
    latin = [s for s in strings if any(c.isascii() and c.isalpha() for c in s)]
    while len(strings) < n - missing:
        piece = rng.choice(latin)
        variant = piece.upper() if rng.random() < 0.5 else piece.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
        if variant != piece:
            strings.setdefault(variant)
    while len(strings) < n:
        strings.setdefault(f"absent-{len(strings)}-\u2603")
    return [Entity.of(s, "span") for s in strings]


def first_occurrence(items: list, text: str) -> int:
    """The old grounding: ``text.find`` of each distinct string, first occurrence only."""
    return sum(text.find(e.text.text) >= 0 for e in items)


def every_exact_occurrence(items: list, text: str) -> int:
    """The old alignment: every exact occurrence of each distinct string (a ``str.find`` loop), no normalising."""
    total = 0
    for item in items:
        needle, start = item.text.text, text.find(item.text.text)
        while start >= 0:
            total += 1
            start = text.find(needle, start + len(needle))
    return total


def timed(function, *args, repeat: int = 3, **kwargs) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--extractions", type=int, default=1000)
    args = parser.parse_args()
    from deepke_llm_core.align import align_extractions

    text = document(args.chars * 2)
    items = extractions(text[:args.chars // 4], args.extractions)  # strings from the first quarter: in every size
    head = text[:args.chars]
    base, found = timed(first_occurrence, items, head)
    old, places = timed(every_exact_occurrence, items, head)
    seconds, aligned = timed(align_extractions, items, head)
    every, expanded = timed(align_extractions, items, head, every_mention=True)
    statuses = {s: sum(e.text.status == s for e in aligned) for s in ("exact", "fuzzy", "not_found")}
    assert all(head[e.text.start:e.text.end] == e.text.text for e in aligned if e.text.status == "exact")
    print(f"{len(head):,} characters, {len(items):,} distinct extractions: {statuses}")
    print(f"baseline (first occurrence, str.find): {base:.4f} s ({found} found)")
    print(f"baseline (every exact occurrence):     {old:.4f} s ({places:,} places)")
    print(f"align_extractions:                     {seconds:.4f} s ({seconds / base:.1f}x the first, "
          f"{seconds / old:.2f}x the second baseline)")
    print(f"align_extractions(every_mention=True): {every:.4f} s ({len(expanded):,} mentions)")
    for size in (args.chars // 4, args.chars // 2, args.chars, args.chars * 2):
        spent, _ = timed(align_extractions, items, text[:size], every_mention=True)
        print(f"  {size:>9,} characters: {spent:.4f} s ({spent / size * 1e6:.2f} µs per character)")


if __name__ == "__main__":
    main()
