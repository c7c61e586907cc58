"""Guided decoding: the answer is forced to be JSON whose keys are the record's schema (``--guided schema``),
and, with ``--guided spans``, every extractive string is forced to be a substring of the record's input.

The constraint comes from the record itself: its task's ``output_schema`` over the instruction's ``schema`` list
gives a JSON Schema; in spans mode the extractive strings of that schema are marked and the input text travels
with it (``predict.spans``), and the schema becomes an EBNF grammar. Each generation step then masks every token
that would leave the grammar, which removes the "F1 is 0 because the output is not JSON" failure (wrong template, a
chatty model) and, with spans, makes an invented span impossible to generate. Both modes write JSON the way the
converter renders answers (``json.dumps``' separators, no free whitespace): the form fine-tuned models learned.

Why xgrammar, for both engines: it is vLLM's default structured-output back end, so ``--engine vllm`` compiles the
very same JSON Schema or EBNF text with it (``StructuredOutputsParams(json=...)`` / ``(grammar=...)``), and for
transformers it offers a token-bitmask API (``GrammarMatcher.fill_next_token_bitmask`` +
``apply_token_bitmask_inplace``) that a ten-line ``LogitsProcessor`` drives; its EBNF front end takes the O(n)-rule
substring grammar of a text directly. lm-format-enforcer, used here before, offers no place for a parser of our own
at the string values of its JSON Schema parser (and a regular expression of every substring is O(n²)), its newest
release (0.11.3) dates from 2025, and on the tiny IE base's 240 held-out records it spent more CPU time on the same
schema-guided decoding (111 s against xgrammar's 86 s, one run on a shared 2-core machine). We drive the matchers
ourselves rather than use ``xgrammar.contrib.hf.LogitsProcessor`` because a batch may mix guided and unguided rows
and a finished row must not be masked (sampling would see an all ``-inf`` row).
"""

from __future__ import annotations

import json
from typing import Any

from ..io import DataError
from ..records import instruction_record
from ..tasks import get_task
from .spans import INPUT_KEY, SPAN, is_span_schema, span_grammar, strip_markers

__all__ = ["GUIDED_MODES", "guided_mode", "output_schema_of", "engine_constraint", "GuidedDecoding"]

GUIDED_MODES = ("schema", "spans")
_SEPARATORS = (", ", ": ")  # json.dumps' defaults: the form every converted training answer has
_CACHE_BYTES = 256 * 2**20


def guided_mode(value: Any) -> str | None:
    """``--guided`` as a mode: ``schema`` (also ``True``/``true``, the flag alone), ``spans``, or ``None`` (off).

    >>> [guided_mode(v) for v in (True, "true", "schema", "spans", False, "none", None)]
    ['schema', 'schema', 'schema', 'spans', None, None, None]
    """
    if value is None or value is False:
        return None
    if value is True:
        return "schema"
    text = str(value).strip().lower()
    if text in ("", "false", "none", "no", "off", "0"):
        return None
    if text in ("true", "yes", "on", "1"):
        return "schema"
    if text not in GUIDED_MODES:
        raise ValueError(f"--guided must be schema or spans (or none), got {value!r}")
    return text


def output_schema_of(record: dict, mode: str = "schema") -> dict:
    """The JSON Schema of a correct answer to one instruction record (its task and schema chunk).

    In ``spans`` mode the extractive strings are marked and the record's input text is carried under ``x-input``
    (an engine turns that into a grammar: :func:`engine_constraint`).
    """
    task = record.get("task")
    if not isinstance(task, str):
        raise DataError(None, None, "task", "guided decoding needs each record's task (convert with deepke-llm convert)")
    parsed = instruction_record(record)
    if mode == "spans":
        if not parsed.is_iepile:
            raise DataError(None, None, "instruction.input", "--guided spans needs the record's input text")
        return {**get_task(task).output_schema(parsed.schema, span=SPAN), INPUT_KEY: parsed.input}
    return get_task(task).output_schema(parsed.schema)


def engine_constraint(schema: dict) -> tuple[str, Any]:
    """What a grammar compiler is given for one row: ``("grammar", EBNF)`` for a span schema, else
    ``("json", plain JSON Schema)``."""
    if is_span_schema(schema):
        return "grammar", span_grammar(schema)
    return "json", strip_markers(schema)


class GuidedDecoding:
    """Compiles each row's constraint for one tokenizer and builds, per batch, a logits processor enforcing them."""

    def __init__(self, tokenizer: Any, stop_ids: list[int], vocab_size: int | None = None):
        try:
            import xgrammar as xgr
        except ImportError:
            raise ImportError("--guided needs xgrammar: pip install 'deepke-llm-cookbook[guided]' (or pip install xgrammar)") from None
        self.vocab_size = vocab_size or len(tokenizer)
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=self.vocab_size, stop_token_ids=list(stop_ids))
        # Bounded: a span grammar is one per record (about 0.6 MB compiled over a 150k-token vocabulary, 400-character
        # input), so an unbounded cache grows with the file; the schema grammars it is for repeat and stay cached.
        self.compiler = xgr.GrammarCompiler(self.info, cache_limit_bytes=_CACHE_BYTES)

    def compile(self, schema: dict) -> Any:
        """The compiled grammar of one row (the compiler caches repeated schemas: one per schema chunk)."""
        kind, spec = engine_constraint(schema)
        if kind == "grammar":
            return self.compiler.compile_grammar(spec)
        return self.compiler.compile_json_schema(json.dumps(spec, ensure_ascii=False), any_whitespace=False,
                                                 separators=_SEPARATORS)

    def logits_processor(self, schemas: list[dict | None]) -> Any:
        """A ``transformers`` logits processor for one ``generate`` call; rows whose schema is ``None`` run free."""
        return _mask_class()([None if s is None else self.compile(s) for s in schemas], self.vocab_size)


_MASK_CLASS: list[type] = []


def _mask_class() -> type:
    """:class:`_GrammarMask` as a ``transformers.LogitsProcessor`` (transformers imported on first use only)."""
    if not _MASK_CLASS:
        from transformers import LogitsProcessor

        _MASK_CLASS.append(type("GrammarMask", (_GrammarMask, LogitsProcessor), {}))
    return _MASK_CLASS[0]


class _GrammarMask:
    """Accept each row's last token, then mask the next token's logits to what its grammar allows."""

    def __init__(self, compiled: list[Any], vocab_size: int):
        import xgrammar as xgr

        self.xgr = xgr
        self.matchers = [None if c is None else xgr.GrammarMatcher(c) for c in compiled]
        self.bitmask = xgr.allocate_token_bitmask(len(compiled), vocab_size)
        self.started = False

    def __call__(self, input_ids, scores):
        active = []
        for row, matcher in enumerate(self.matchers):
            if matcher is None or matcher.is_terminated():
                continue
            # A token the grammar refuses can only follow the end of the row (padding after a stop): stop guiding it.
            if self.started and not matcher.accept_token(int(input_ids[row, -1])):
                self.matchers[row] = None
                continue
            if not matcher.is_terminated():
                matcher.fill_next_token_bitmask(self.bitmask, row)
                active.append(row)
        self.started = True
        if active:
            mask = self.bitmask.to(scores.device) if scores.device.type == "cuda" else self.bitmask
            target = scores if scores.device.type in ("cpu", "cuda") else scores.cpu()
            self.xgr.apply_token_bitmask_inplace(target, mask, indices=active)
            if target is not scores:
                scores.copy_(target)
        return scores
