"""Span-constrained decoding: a grammar in which every extractive string is a substring of the input text.

A task's answer schema (``Task.output_schema(entries, span=SPAN)``) marks each string that must be copied from
the text (an entity, a head or tail, a trigger, an argument, a KG entity or value) with :data:`SPAN`; the other
strings (schema keys, EE's ``"NAN"``) stay literal. :func:`span_grammar` turns that schema and the record's input
into one EBNF (GBNF) grammar, which xgrammar compiles for the transformers engine and vLLM compiles through its
default structured-output back end, xgrammar (``StructuredOutputsParams(grammar=...)``): the same text for both.

Why a grammar of our own rather than the library's JSON Schema converter: "any substring of this text" is not a
JSON Schema notion (a ``pattern`` would be an alternation of O(n²) substrings), and xgrammar's converter has no
hook to put a rule of ours at exactly the extractive positions. The JSON around the spans is simple and fixed
(the subset of JSON Schema the tasks use, written with ``json.dumps``' separators, as the models were trained),
so it is emitted here in a few rules.

The substrings of a text are the paths from the start state of its *suffix automaton* (Blumer et al. 1985): at
most 2n - 1 states and 3n - 4 transitions, built in O(n). Each state becomes one right-recursive rule
``s_i ::= "c" s_j | ... | ""``, so the substring language is a regular grammar of O(n) rules (a 5,000-character
text compiles in about a second on one CPU thread; a sentence in milliseconds). Each transition's character is
written as it appears *inside a JSON string* (``"`` as ``\\"``, a newline as ``\\n``), so the decoded JSON value is
exactly a substring of the text; the empty string is not a span.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SPAN", "INPUT_KEY", "is_span_schema", "suffix_automaton", "substring_rules", "span_grammar",
           "strip_markers"]

SPAN_KEY = "x-span"
INPUT_KEY = "x-input"
SPAN: dict[str, Any] = {"type": "string", SPAN_KEY: True}
"""The JSON Schema of an extractive string (a plain string to any validator; a substring of the input here)."""

_SEPARATORS = (", ", ": ")  # json.dumps' defaults: the form every converted training answer has


def is_span_schema(schema: dict | None) -> bool:
    """Whether ``schema`` asks for span-constrained decoding (it carries the record's input text)."""
    return isinstance(schema, dict) and isinstance(schema.get(INPUT_KEY), str)


def strip_markers(schema: Any) -> Any:
    """The plain JSON Schema: span markers and the input text removed (what an endpoint or validator is given)."""
    if isinstance(schema, dict):
        return {k: strip_markers(v) for k, v in schema.items() if k not in (SPAN_KEY, INPUT_KEY)}
    if isinstance(schema, list):
        return [strip_markers(v) for v in schema]
    return schema


def suffix_automaton(text: str) -> list[dict[str, int]]:
    """Transitions of the suffix automaton of ``text``, state 0 first: every path from state 0 spells a substring.

    >>> automaton = suffix_automaton("abab")
    >>> def accepts(s):
    ...     state = 0
    ...     for ch in s:
    ...         if ch not in automaton[state]:
    ...             return False
    ...         state = automaton[state][ch]
    ...     return True
    >>> [accepts(s) for s in ("bab", "abab", "aa", "ba")]
    [True, True, False, True]
    """
    transitions: list[dict[str, int]] = [{}]
    link, length = [-1], [0]
    last = 0
    for ch in text:
        current = len(transitions)
        transitions.append({})
        link.append(0)
        length.append(length[last] + 1)
        state = last
        while state != -1 and ch not in transitions[state]:
            transitions[state][ch] = current
            state = link[state]
        if state != -1:
            target = transitions[state][ch]
            if length[state] + 1 == length[target]:
                link[current] = target
            else:  # split: a clone of target reached by the shorter strings
                clone = len(transitions)
                transitions.append(dict(transitions[target]))
                link.append(link[target])
                length.append(length[state] + 1)
                while state != -1 and transitions[state].get(ch) == target:
                    transitions[state][ch] = clone
                    state = link[state]
                link[target] = link[current] = clone
        last = current
    return transitions


def _ebnf_literal(body: str) -> str:
    """An EBNF string literal matching exactly ``body`` (quotes and backslashes escaped, the rest as UTF-8)."""
    return '"' + body.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _json_char(ch: str) -> str:
    """How ``ch`` is written inside a JSON string by ``json.dumps(..., ensure_ascii=False)``."""
    if "\ud800" <= ch <= "\udfff":  # a lone surrogate cannot be UTF-8: only its \\u escape exists
        return json.dumps(ch)[1:-1]
    return json.dumps(ch, ensure_ascii=False)[1:-1]


def substring_rules(text: str, name: str = "span") -> list[str]:
    """EBNF rules: ``name`` matches any non-empty substring of ``text`` as written inside a JSON string.

    An empty text has no non-empty substring; its rule then matches nothing a model can write, so an answer for
    it can only hold empty lists (``[^\\x00-\\U0010FFFF]`` is an empty character class).
    """
    automaton = suffix_automaton(text)
    if not automaton[0]:
        return [f"{name} ::= [^\\x00-\\U0010FFFF]"]
    rules = []
    for state, moves in enumerate(automaton):
        alternatives = [f"{_ebnf_literal(_json_char(ch))} {name}_{target}" for ch, target in moves.items()]
        if state == 0:
            rules.append(f"{name} ::= " + " | ".join(alternatives))
        else:
            rules.append(f"{name}_{state} ::= " + " | ".join(alternatives + ['""']))
    return rules


class _Emitter:
    """EBNF for the JSON Schema subset the tasks' answer schemas use; one rule per schema node."""

    def __init__(self) -> None:
        self.rules: list[str] = []
        self.uses_string = False

    def rule(self, body: str) -> str:
        name = f"v{len(self.rules)}"
        self.rules.append(f"{name} ::= {body}")
        return name

    def node(self, schema: Any) -> str:
        if not isinstance(schema, dict):
            raise ValueError(f"span-constrained decoding: expected a schema object, got {schema!r}")
        if "anyOf" in schema:
            return self.rule(" | ".join(self.node(option) for option in schema["anyOf"]))
        if "const" in schema:
            return self.rule(_ebnf_literal(json.dumps(schema["const"], ensure_ascii=False)))
        kind = schema.get("type")
        if kind == "string":
            if schema.get(SPAN_KEY):
                return self.rule('"\\"" span "\\""')
            self.uses_string = True
            return self.rule("string")
        if kind == "array":
            item = self.node(schema.get("items", {"type": "string"}))
            return self.rule(f'"[" ({item} ({_ebnf_literal(_SEPARATORS[0])} {item})*)? "]"')
        if kind == "object":
            return self.object(schema)
        raise ValueError(f"span-constrained decoding does not support the schema {json.dumps(schema)[:120]}")

    def object(self, schema: dict) -> str:
        comma, colon = (_ebnf_literal(s) for s in _SEPARATORS)
        properties = schema.get("properties") or {}
        if not properties:  # a map: free keys (KG entities) with one value schema
            key, value = self.node(schema.get("propertyNames", {"type": "string"})), schema.get("additionalProperties")
            if not isinstance(value, dict):
                raise ValueError("span-constrained decoding: an object needs properties or an additionalProperties schema")
            pair = self.rule(f"{key} {colon} {self.node(value)}")
            return self.rule(f'"{{" ({pair} ({comma} {pair})*)? "}}"')
        pairs = [self.rule(f"{_ebnf_literal(json.dumps(k, ensure_ascii=False))} {colon} {self.node(v)}")
                 for k, v in properties.items()]
        required = set(schema.get("required", []))
        if all(k in required for k in properties):  # every key, in schema order (as the answers were rendered)
            return self.rule('"{" ' + f" {comma} ".join(pairs) + ' "}"')
        if required:
            raise ValueError("span-constrained decoding: objects with some optional keys are not supported")
        # Any subset of the keys, in schema order: after pair i come "}" or ", " and a later pair.
        tails: list[str] = [""] * len(pairs)
        for i in reversed(range(len(pairs))):
            later = [f"{comma} {pairs[j]} {tails[j]}" for j in range(i + 1, len(pairs))]
            tails[i] = self.rule(" | ".join(['"}"', *later]))
        return self.rule(" | ".join(['"{}"', *(f'"{{" {pairs[i]} {tails[i]}' for i in range(len(pairs)))]))


def span_grammar(schema: dict, text: str | None = None) -> str:
    r"""The EBNF grammar of answers to ``schema`` whose :data:`SPAN` strings are substrings of ``text``.

    ``text`` defaults to the schema's own ``x-input`` (how :func:`~deepke_llm_core.predict.guided.output_schema_of`
    hands it to the engines).

    >>> print(span_grammar({"type": "array", "items": SPAN}, 'a"a'), end="")
    root ::= v1
    v0 ::= "\"" span "\""
    v1 ::= "[" (v0 (", " v0)*)? "]"
    span ::= "a" span_1 | "\\\"" span_2
    span_1 ::= "\\\"" span_2 | ""
    span_2 ::= "a" span_3 | ""
    span_3 ::= ""
    """
    text = schema.get(INPUT_KEY, "") if text is None else text
    emitter = _Emitter()
    root = emitter.node({k: v for k, v in schema.items() if k != INPUT_KEY})
    lines = [f"root ::= {root}", *emitter.rules, *substring_rules(text)]
    if emitter.uses_string:
        lines += ['string ::= "\\"" char* "\\""',
                  'char ::= [^"\\\\\\x00-\\x1f] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])']
    return "\n".join(lines) + "\n"
