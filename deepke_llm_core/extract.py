"""Extract from texts and documents of any length: ``extract(...)`` in memory, ``deepke-llm extract`` on files.

This is the convenience of langextract's ``extract`` or GLiNER's ``predict_entities`` on top of the project's own
pieces: each text is cut into sentence windows under a token budget (``documents``; a short text is one window,
the text itself), every window becomes the IEPile test instructions ``deepke-llm convert --split test`` would
write (the task's recommended ``split_num`` unless one is given), every instruction goes through one engine (a
local model, vLLM, an endpoint), the answers are parsed by the task into typed extractions (``records``), located
in their window (``align``) and merged into one list per text with offsets into the whole text. The widget
(``widgets.py``) and chapter 10 are thin layers over :func:`extract`; ``deepke-llm extract`` (:func:`extract_file`)
does the same for a file of documents through ``engines.runner``, so a killed run resumes window by window and
gives the same output.

>>> from deepke_llm_core.schema import Schema
>>> [json.loads(r["instruction"])["schema"] for r in build_instructions("Tom met Ann.", "NER", Schema(["person"]), "en")]
[['person']]
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .documents import DEFAULT_OVERLAP_TOKENS, DEFAULT_WINDOW_TOKENS, Document, Window
from .records import Extraction
from .schema import Schema, parse_schema_text

__all__ = ["ExtractionResult", "ExtractArguments", "build_instructions", "extract", "extract_file", "build_extract_engine",
           "document_scores", "run_extract_command"]


@dataclass
class ExtractionResult:
    """What one text gave: typed extractions (offsets into the whole text), each instruction's raw answer, parse
    errors, and how many windows the text was read in."""

    text: str
    extractions: list[Extraction]
    outputs: list[str] = field(default_factory=list)
    parse_errors: int = 0
    windows: int = 1

    @property
    def not_in_text(self) -> list[Extraction]:
        """Extractions with a string that occurs nowhere in the text (hallucinated or paraphrased)."""
        return [e for e in self.extractions if any(m.status == "not_found" for m in e.mentions())]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "extractions": [e.to_json() for e in self.extractions],
                "parse_errors": self.parse_errors}


def _converter(task: str, schema: Schema | str, language: str, split_num: int | None):
    from .convert import ConvertConfig, RecordConverter
    from .tasks import get_task

    schema = parse_schema_text(schema) if isinstance(schema, str) else schema
    task_obj = get_task(task)
    config = ConvertConfig(src_path="<text>", tgt_path="", task=task_obj.name, language=language, split="test",
                           split_num=split_num or task_obj.recommended_split_num)
    return RecordConverter(config, schema)


def _instructions(converter: Any, text: str) -> list[dict]:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the text is empty: give a text to extract from")
    return [json.loads(line) for line in converter.convert(1, {"text": text})]


def build_instructions(text: str, task: str, schema: Schema | str, language: str,
                       split_num: int | None = None) -> list[dict]:
    """The test-split instruction records of one text, built by the converter (``deepke-llm convert --split test``)."""
    return _instructions(_converter(task, schema, language, split_num), text)


def _guided_schemas(requests: list[dict], guided: str | None) -> list[dict] | None:
    """Each window instruction's decoding constraint (``predict.guided``), or None when decoding is free."""
    from .predict.guided import guided_mode, output_schema_of

    mode = guided_mode(guided)
    return [output_schema_of(r, mode) for r in requests] if mode else None


def _requests(converter: Any, windows: list[Window]) -> list[dict]:
    """One instruction record per window and schema chunk, tagged with its window."""
    return [{**record, "window": w.index, "start": w.start} for w in windows for record in _instructions(converter, w.text)]


def _assemble(text: str, windows: list[Window], requests: list[dict], outputs: list[str], task_obj: Any,
              lenient: bool, every_mention: bool) -> ExtractionResult:
    """Parse each answer, align it in its window, merge the windows (``documents.merge_windows``)."""
    from .align import align_extractions
    from .documents import merge_windows

    found: dict[int, list[Extraction]] = {w.index: [] for w in windows}
    result = ExtractionResult(text, [], windows=len(windows))
    for request, output in zip(requests, outputs):
        result.outputs.append(output)
        parsed = task_obj.parse_answer(output, lenient)
        if parsed is None:
            result.parse_errors += 1
        else:
            found[request["window"]].extend(parsed)
    result.extractions = merge_windows((w, align_extractions(found[w.index], w.text, every_mention=every_mention))
                                       for w in windows)
    return result


def extract(texts: str | Sequence[str], task: str, schema: Schema | str, engine: Any, *, language: str = "en",
            split_num: int | None = None, lenient: bool = True, sampling: Any = None,
            window_tokens: int = DEFAULT_WINDOW_TOKENS, overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
            window_sentences: int | None = None, every_mention: bool = False,
            guided: str | None = None) -> ExtractionResult | list[ExtractionResult]:
    """Extract from one text (returns one result) or several (a list, in order), with one engine call.

    Args:
        texts: a text or a list of texts, of any length.
        task: a registered task (``NER``, ``RE``, ``EE``, ...).
        schema: a :class:`Schema`, or its text in either file form.
        engine: an engine (``engines.create_engine(...)``, ``TransformersEngine.load(...)``).
        language: ``zh`` or ``en``: the instruction sentence's language.
        split_num: schema items per instruction; default: the task's recommended value.
        lenient: also read answers wrapped in code fences or slightly broken JSON (an answer that still does
            not parse counts as a parse error and contributes nothing).
        sampling: ``engines.Sampling``; default greedy, 512 new tokens.
        window_tokens, overlap_tokens: a text longer than ``window_tokens`` tokens is read in sentence windows
            that overlap by up to ``overlap_tokens`` (``documents``); a shorter one is sent whole, as is.
        window_sentences: at most this many sentences per window (``1`` for a model trained on single sentences).
        every_mention: mark every occurrence of an extracted entity's string, not only as many as the answer
            names (``align.align_extractions``).
        guided: ``"schema"`` (the answer's keys are the chunk's schema) or ``"spans"`` (also every extracted
            string is a substring of its window: nothing can be invented); a local engine for ``spans``.
    """
    from .documents import make_windows, token_counter
    from .engines import Sampling
    from .prompts import query_of
    from .tasks import get_task

    single = isinstance(texts, str)
    batch = [texts] if single else list(texts)
    task_obj = get_task(task)
    converter = _converter(task_obj.name, schema, language, split_num)
    count = token_counter(engine)
    for text in batch:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the text is empty: give a text to extract from")
    windows = [make_windows(t, window_tokens, overlap_tokens, count, window_sentences) for t in batch]
    requests = [_requests(converter, w) for w in windows]
    flat = [r for rs in requests for r in rs]
    schemas = _guided_schemas(flat, guided)
    answers = iter(engine.generate([engine.messages(query_of(r)) for r in flat], sampling or Sampling(), schemas))
    results = [_assemble(t, w, rs, [next(answers).text for _ in rs], task_obj, lenient, every_mention)
               for t, w, rs in zip(batch, windows, requests)]
    return results[0] if single else results


# ---- deepke-llm extract: documents in a file ------------------------------------------------------------------


@dataclass
class ExtractArguments:
    """``deepke-llm extract``: documents, a task and schema, and infer's model flags or icl's engine flags."""

    input_file: str = field(metadata={"help": 'documents: JSON Lines {"id", "text"} (plus gold annotations for a '
                                              "document-level F1), or a folder of .txt files"})
    output_file: str = field(metadata={"help": "one line per document: its id and its extractions (offsets into it)"})
    task: str = field(metadata={"help": "NER, RE, SPO, EE, EET, EEA or KG"})
    schema_path: str = field(metadata={"help": "the schema file (three JSON lines, as for convert)"})
    language: str = field(default="en", metadata={"help": "the instruction's language", "choices": ["zh", "en"]})
    model_name_or_path: str | None = field(default=None, metadata={"help": "base or merged model (a folder or a Hub id)"})
    checkpoint_dir: str | None = field(default=None, metadata={"help": "LoRA or P-Tuning adapter folder"})
    template: str | None = field(default=None, metadata={"help": "default: the adapter's stored template, else 'auto'"})
    system_prompt: str | None = None
    model_name: str | None = None
    bits: int | None = None
    bf16: bool = False
    fp16: bool = False
    trust_remote_code: bool = False
    engine: str = field(default="hf", metadata={"help": "hf (transformers), vllm, openai (an endpoint), or an ICL engine"})
    model_id: str | None = field(default=None, metadata={"help": "--engine openai: the model name the endpoint serves"})
    base_url: str | None = field(default=None, metadata={"help": "--engine openai: e.g. http://127.0.0.1:8000/v1 "
                                                                 "(the key from $OPENAI_API_KEY)"})
    concurrency: int = field(default=4, metadata={"help": "--engine openai: requests in flight"})
    timeout: float = field(default=60.0, metadata={"help": "--engine openai: seconds per request"})
    max_retries: int = 3
    batch_size: int = 16
    max_new_tokens: int = 256
    cutoff_len: int = field(default=512, metadata={"help": "prompt budget in tokens (instruction + window)"})
    temperature: float = field(default=0.0, metadata={"help": "0: greedy"})
    top_p: float = 1.0
    window_tokens: int = field(default=DEFAULT_WINDOW_TOKENS, metadata={"help": "tokens of text per window"})
    overlap_tokens: int = field(default=DEFAULT_OVERLAP_TOKENS, metadata={"help": "tokens two windows share at most"})
    window_sentences: int | None = field(default=None, metadata={"help": "at most this many sentences per window "
                                                                         "(1: a model trained on single sentences)"})
    split_num: int | None = field(default=None, metadata={"help": "schema items per instruction; default: the task's"})
    every_mention: bool = field(default=True, metadata={"help": "mark every occurrence of an extracted entity's string"})
    lenient: bool = field(default=True, metadata={"help": "read answers in code fences or slightly broken JSON"})
    progress: bool | None = field(default=None, metadata={"help": "progress bar on stderr (default: on a terminal)"})
    guided: str | None = field(default=None, metadata={
        "help": "schema: answers are JSON whose keys are the chunk's schema; spans: also every extracted string is a "
                "substring of its window (hf or vllm engine; needs the `guided` extra)"})

    def __post_init__(self) -> None:
        from .predict.guided import guided_mode

        self.guided = guided_mode(self.guided)


def build_extract_engine(args: ExtractArguments) -> Any:
    """The engine ``args`` describe (a local model is loaded here)."""
    from .engines import EngineOptions, create_engine, is_endpoint

    endpoint = is_endpoint(args.engine)
    model = args.model_id or args.model_name_or_path
    if not model:
        raise ValueError("--model_name_or_path is required (a local folder or a Hub id), or --model_id for an endpoint")
    if endpoint and args.checkpoint_dir:
        raise ValueError("--checkpoint_dir needs a local engine (hf or vllm); an endpoint serves its own model")
    options = EngineOptions(model_id=model, checkpoint_dir=args.checkpoint_dir, template=args.template,
                            system_prompt=args.system_prompt, model_name=args.model_name, bits=args.bits,
                            dtype="bf16" if args.bf16 else "fp16" if args.fp16 else "auto",
                            trust_remote_code=args.trust_remote_code, cutoff_len=args.cutoff_len,
                            batch_size=args.batch_size, base_url=args.base_url, timeout=args.timeout,
                            max_retries=args.max_retries, guided=args.guided)
    return create_engine(args.engine, options)


def _uncredited(extraction: Extraction) -> Extraction:
    """The extraction with each string not in the text made unmatchable (a NUL prefix no gold string has)."""
    from .records import Mention

    if not any(m.status == "not_found" for m in extraction.mentions()):
        return extraction
    return extraction.with_mentions([Mention("\0" + m.text, status=m.status) if m.status == "not_found" else m
                                     for m in extraction.mentions()])


def document_scores(task_obj: Any, documents: Sequence[Document], results: Sequence[ExtractionResult]) -> dict | None:
    """P/R/F1 over the documents that carry gold annotations, matched as ``evaluate`` matches one text's tuples
    (multisets of type and strings), with one rule more: a string that is not in the text is never credited, even
    when the document mentions it elsewhere (a sentence's invented "John Brown" must not match the gold "John Brown"
    of another sentence). ``None`` when no document has gold."""
    from .scoring import score_lists  # the scorer of deepke-llm evaluate, fed typed lists directly

    instances = [(document.gold, [_uncredited(e) for e in result.extractions], result.parse_errors)
                 for document, result in zip(documents, results) if document.gold is not None]
    return score_lists(task_obj, instances) if instances else None


def _check(args: ExtractArguments) -> None:
    for name in ("batch_size", "max_new_tokens", "cutoff_len", "concurrency", "window_tokens"):
        value = getattr(args, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} must be a positive integer, got {value!r}")
    from .engines import check_local_for_spans

    check_local_for_spans(args.engine, args.guided)
    if args.window_sentences is not None and args.window_sentences < 1:
        raise ValueError(f"--window_sentences must be at least 1, got {args.window_sentences}")
    if not 0 <= args.overlap_tokens < args.window_tokens:
        raise ValueError(f"--overlap_tokens must be in 0..{args.window_tokens - 1} (below --window_tokens), "
                         f"got {args.overlap_tokens}")
    if args.bf16 and args.fp16:
        raise ValueError("choose one of --bf16 and --fp16")


def extract_file(args: ExtractArguments, engine: Any = None) -> dict[str, Any]:
    """Extract from every document of ``args.input_file`` into ``args.output_file``; returns the run's statistics.

    The window instructions go through ``engines.runner.run_to_file`` into ``<output_file>.windows`` (each window
    instruction with its answer, resumable: a rerun after a kill asks only what is missing, and a run with other
    settings is refused); the documents are then assembled from that file, and the output is replaced in one step.
    """
    from .documents import make_windows, read_documents, token_counter
    from .engines import Sampling
    from .engines.runner import run_to_file
    from .io import DataError, dumps, iter_jsonl
    from .prompts import query_of
    from .schema import load_schema
    from .tasks import get_task

    _check(args)
    side = f"{args.output_file}.windows"
    if os.path.isfile(args.output_file) and os.path.getsize(args.output_file) and not os.path.exists(f"{side}.run"):
        raise DataError(args.output_file, None, None, "exists, but no run of deepke-llm extract wrote it (no "
                        f"{os.path.basename(side)}.run beside it); choose another --output_file, or delete it")
    task_obj = get_task(args.task)
    schema = load_schema(args.schema_path)
    documents = read_documents(args.input_file, task_obj, schema)
    engine = engine or build_extract_engine(args)
    converter = _converter(task_obj.name, schema, args.language, args.split_num)
    count = token_counter(engine)
    windows = [make_windows(d.text, args.window_tokens, args.overlap_tokens, count, args.window_sentences)
               for d in documents]
    requests = [[{"doc": d.id, **r} for r in _requests(converter, w)] for d, w in zip(documents, windows)]
    flat = [r for rs in requests for r in rs]
    settings = {"stage": "extract", "task": task_obj.name, "language": args.language, "cutoff_len": args.cutoff_len,
                "window_tokens": args.window_tokens, "overlap_tokens": args.overlap_tokens,
                "window_sentences": args.window_sentences, "split_num": args.split_num, "guided": args.guided}
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_new_tokens)
    stats = run_to_file(flat, side, engine, sampling, lambda r: engine.messages(query_of(r)), settings=settings,
                        schema_of=(lambda r: _guided_schemas([r], args.guided)[0]) if args.guided else None,
                        concurrency=args.concurrency, progress=args.progress, desc="extract")
    outputs = [record.get("output") for _, record in iter_jsonl(side)]
    if len(outputs) != len(flat):
        raise DataError(side, None, None, f"holds {len(outputs)} answers for {len(flat)} window instructions")
    answers = iter(outputs)
    results = [_assemble(d.text, w, rs, [next(answers) for _ in rs], task_obj, args.lenient, args.every_mention)
               for d, w, rs in zip(documents, windows, requests)]
    tmp = f"{args.output_file}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for document, result in zip(documents, results):
            handle.write(dumps({"id": document.id, "extractions": [e.to_json() for e in result.extractions],
                                "windows": result.windows, "parse_errors": result.parse_errors}) + "\n")
    os.replace(tmp, args.output_file)
    mentions = [m for r in results for e in r.extractions for m in e.mentions()]
    stats.update(documents=len(documents), windows=sum(len(w) for w in windows), requests=len(flat),
                 parse_errors=sum(r.parse_errors for r in results), extractions=sum(len(r.extractions) for r in results),
                 not_in_text=sum(len(r.not_in_text) for r in results),
                 fuzzy=sum(m.status == "fuzzy" for m in mentions),
                 repetition_guarded=stats["finish_reasons"].get("repetition", 0), output_file=args.output_file,
                 windows_file=side)
    if getattr(engine, "shortened", 0):
        stats["shortened_inputs"] = engine.shortened
        print(f"extract: {engine.shortened} window prompts were longer than --cutoff_len {args.cutoff_len} and were "
              "shortened; lower --window_tokens", file=sys.stderr)
    scores = document_scores(task_obj, documents, results)
    if scores is not None:
        stats["document_scores"] = scores
    return stats


def run_extract_command(args: ExtractArguments) -> int:
    """The body of ``deepke-llm extract``: statistics as JSON on stdout; an endpoint that fails for good exits 2."""
    from .engines import EndpointError

    try:
        stats = extract_file(args)
    except EndpointError as exc:
        print(f"deepke-llm extract: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats, ensure_ascii=False, indent=2))
    return 0
