"""``deepke-llm icl``: the draft README's ICL flags, one text or a whole file, an API or a local model.

The flags are one dataclass (``ICLArguments``) read like every stage's settings (``args.parse_settings``), so
booleans are real booleans: upstream's ``--in_context`` used ``type=bool``, so ``--in_context False`` meant *True*
(SPEC.md §10); ours reads true/false/1/0/yes/no, and a bare flag means true.
Unset sampling flags get real defaults instead of upstream's ``None``. Every per-task requirement of the draft
README's table is checked before anything is loaded or sent: ``re`` needs the head and tail entities and their
types, ``da`` needs ``--labels``; demonstrations are validated before the first request.

Single text: ``--text_input``; the answer goes to stdout. A file: ``--input_file`` and ``--output_file``; records
plus ``output`` are written (resumable: ``engines.runner``), the run's settings without the API key beside them,
and a usage summary is printed. ``--print_prompt`` prints the user message (plus a newline, as upstream's
``print``) and exits without creating an engine.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..args import parse_settings
from ..engines import EndpointError, EngineOptions, Sampling, create_engine, engine_names
from .prompts import ICL_TASKS, build_icl_prompt, check_task, icl_task, normalize_language

__all__ = ["ICLArguments", "parse_icl_args", "parse_labels", "check_args", "icl_prompt", "run_icl", "run_icl_command",
           "score_icl", "main"]

_RE_FIELDS = ("head_entity", "head_type", "tail_entity", "tail_type")


def _help(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass
class ICLArguments:
    """The draft README's ICL flags plus the batch ones; the same from flags, one YAML file, or code."""

    engine: str | None = field(default=None, metadata=_help(f"one of {', '.join(engine_names())}"))
    model_id: str | None = field(default=None, metadata=_help("API model name, or a local folder / Hub id for local engines"))
    api_key: str | None = field(default=None, metadata=_help("default: $OPENAI_API_KEY or $DEEPKE_API_KEY (never saved or logged)"))
    base_url: str | None = field(default=None, metadata=_help("OpenAI-compatible endpoint (vLLM, Ollama, DashScope, ...)"))
    temperature: float = field(default=0.0, metadata=_help("0: greedy (default)"))
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] | None = field(default=None, metadata=_help("stop strings"))
    task: str | None = field(default=None, metadata=_help(f"one of {', '.join(ICL_TASKS)}"))
    language: str = field(default="en", metadata=_help("en, or zh (ch) for Chinese", choices=["ch", "zh", "en"]))
    in_context: bool = field(default=False, metadata=_help("use demonstrations: true/false (a bare flag means true)"))
    instruction: str | None = field(default=None, metadata=_help("custom instruction, replaces the default (not recommended)"))
    data_path: str | None = field(default=None, metadata=_help("folder of <task>_<language>.json demonstrations; default data/icl"))
    text_input: str | None = field(default=None, metadata=_help("the text; for da, the relation label"))
    domain: str | None = None
    labels: str | None = field(default=None, metadata=_help("comma-separated labels (required for da)"))
    head_entity: str | None = field(default=None, metadata=_help("required for re"))
    head_type: str | None = field(default=None, metadata=_help("required for re"))
    tail_entity: str | None = field(default=None, metadata=_help("required for re"))
    tail_type: str | None = field(default=None, metadata=_help("required for re"))
    print_prompt: bool = field(default=False, metadata=_help("print the user message and exit (no engine call)"))
    input_file: str | None = field(default=None, metadata=_help("IEPile/InstructIE test records or raw text records (JSON Lines)"))
    output_file: str | None = field(default=None, metadata=_help("prediction records (resumes the same run when it exists)"))
    concurrency: int = field(default=4, metadata=_help("requests in flight (API engines)"))
    batch_size: int = field(default=8, metadata=_help("generation batch (local engines)"))
    timeout: float = field(default=60.0, metadata=_help("seconds per request"))
    max_retries: int = field(default=3, metadata=_help("retries on 429/5xx/timeouts/bad bodies"))
    retry_delay: float = field(default=1.0, metadata=_help("first backoff in seconds (doubles each retry)"))
    cache_dir: str | None = field(default=None, metadata=_help("answer cache; batch default: $DEEPKE_LLM_CACHE/icl"))
    no_cache: bool = field(default=False, metadata=_help("neither read nor write the cache"))
    progress: bool | None = field(default=None, metadata=_help("progress bar on stderr (default: on a terminal)"))
    trust_remote_code: bool = field(default=False, metadata=_help(
        "local engines: run a model repository's own code (off by default; read that code first)"))


def parse_labels(value: str | list | None) -> list[str] | None:
    """``"PER, ORG"``, ``"人物，公司"`` (either comma) or a JSON list -> ``["PER", "ORG"]``; empty -> ``None``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    items = value if isinstance(value, list) else re.split(r"[,，]", value)
    labels = [str(item).strip() for item in items if str(item).strip()]
    return labels or None


def parse_icl_args(argv: list[str] | None = None) -> ICLArguments:
    """Flags, or one YAML file of them (upstream's ICL configs work as they are)."""
    return parse_settings([ICLArguments], argv, prog="deepke-llm icl",
                          description="In-context learning with an API or a local chat model.")[0]


def check_args(args: ICLArguments, *, batch: bool) -> None:
    """The draft README's per-task requirements, as one clear error each."""
    if args.task is not None:
        args.task = check_task(args.task)
    args.language = normalize_language(args.language)
    args.labels = parse_labels(args.labels)
    if not batch:
        if args.task is None:
            raise ValueError(f"--task is required; valid tasks: {', '.join(ICL_TASKS)}")
        if not args.text_input:
            raise ValueError("--text_input is required (the text; for da, the relation label), or --input_file for a batch")
        if icl_task(args.task).needs_pair:
            missing = [f"--{name}" for name in _RE_FIELDS if not getattr(args, name)]
            if missing:
                raise ValueError(f"task {args.task} needs {', '.join(missing)} (the entity pair and its types)")
    elif not args.output_file and not args.print_prompt:
        raise ValueError("--input_file needs --output_file (where the prediction records go)")
    if args.task is not None and icl_task(args.task).needs_labels and not args.labels:
        raise ValueError(f"task {args.task} needs --labels (the entity types, e.g. 'person, organization')")
    if args.engine is None and not args.print_prompt:
        raise ValueError(f"--engine is required; valid engines: {', '.join(engine_names())}")
    if args.concurrency < 1 or args.batch_size < 1:
        raise ValueError("--concurrency and --batch_size must be at least 1")
    if args.max_retries < 0:
        raise ValueError(f"--max_retries must be 0 or more, got {args.max_retries}")
    if args.timeout <= 0 or args.retry_delay < 0:
        raise ValueError("--timeout must be positive and --retry_delay 0 or more")


def icl_prompt(args: ICLArguments, text: str, demos: list[dict] | None, fields: dict[str, Any] | None = None) -> str:
    """The PromptCraft user message; ``fields`` (a record) may supply the re pair, else the flags do."""
    fields = fields or {}
    pair = _pair(args, fields)
    if icl_task(args.task).needs_pair and not all(pair.values()):
        raise ValueError(f"task {args.task} needs {', '.join(n for n, v in pair.items() if not v)} for the text {text[:40]!r}")
    return build_icl_prompt(args.task, args.language, text, domain=args.domain, labels=args.labels,
                            examples=demos, instruction=args.instruction, **pair)


def _engine(args: ICLArguments):
    options = EngineOptions(model_id=args.model_id, api_key=args.api_key, base_url=args.base_url, timeout=args.timeout,
                            max_retries=args.max_retries, retry_delay=args.retry_delay, batch_size=args.batch_size,
                            trust_remote_code=args.trust_remote_code)
    return create_engine(args.engine, options)


_PROMPT_SETTINGS = ("task", "language", "in_context", "instruction", "data_path", "domain", "labels", *_RE_FIELDS)


def _prompt_settings(args: ICLArguments) -> dict[str, Any]:
    """What, besides the engine and sampling, decides the answers of a batch run (its resume fingerprint)."""
    return {name: getattr(args, name) for name in _PROMPT_SETTINGS}


def run_icl(args: ICLArguments, out: TextIO | None = None) -> dict[str, Any]:
    """Run one ICL command; returns ``{"output": text}`` (single) or the batch statistics."""
    from .batch import read_batch_records, record_prompt, run_batch

    out = out or sys.stdout
    batch = bool(args.input_file)
    check_args(args, batch=batch)
    demos = None
    if args.in_context:
        if args.task is None:
            raise ValueError(f"--in_context needs --task; valid tasks: {', '.join(ICL_TASKS)}")
        from .demos import load_demos

        demos = load_demos(args.task, args.language, args.data_path)
    sampling = Sampling(args.temperature, args.top_p, args.max_tokens, tuple(args.stop) if args.stop else None)
    if not batch:
        prompt = icl_prompt(args, args.text_input, demos)
        if args.print_prompt:
            out.write(prompt + "\n")  # as upstream prints: print(prompt), so da's prompt ends in a blank line
            return {"prompt": prompt}
        from ..engines.cache import ResponseCache
        from ..engines.runner import cached_complete

        engine = _engine(args)
        cache = ResponseCache(args.cache_dir) if args.cache_dir and not args.no_cache else None
        completion, _ = cached_complete(engine, engine.messages(prompt), sampling, cache)
        out.write(completion.text + "\n")
        extractions = icl_task(args.task).parse_answer(completion.text, pair=_pair(args, {}))
        if extractions is not None:  # the answer in the task's format, read into typed extractions
            print("extractions: " + json.dumps([e.to_json() for e in extractions], ensure_ascii=False), file=sys.stderr)
        return {"output": completion.text, "extractions": extractions, "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens}

    records = read_batch_records(args.input_file)
    if demos is not None and any(r.get("instruction") for r in records):
        raise ValueError(f"{args.input_file}: --in_context applies to PromptCraft prompts of raw text records; "
                         "instruction records are sent as they are")
    make_prompt = None
    if args.task is not None:
        make_prompt = lambda record: icl_prompt(args, record["text"], demos, record)  # noqa: E731
    if args.print_prompt:
        prompt = record_prompt(records[0], make_prompt) if records else ""
        out.write(prompt + "\n")
        return {"prompt": prompt}
    if make_prompt is None and not all(r.get("instruction") for r in records):
        raise ValueError(f"{args.input_file}: records without 'instruction' need --task for their PromptCraft prompt")
    from ..engines.cache import ResponseCache, default_cache_dir

    engine = _engine(args)
    cache = None if args.no_cache else ResponseCache(args.cache_dir or default_cache_dir())
    stats = run_batch(records, args.output_file, engine, sampling, make_prompt=make_prompt, cache=cache,
                      concurrency=args.concurrency, progress=args.progress, settings=_prompt_settings(args))
    print(f"icl: {stats['answered']} answered ({stats['cached']} from cache, {stats['requested']} requested), "
          f"{stats['already_done']} already done; tokens: {stats['prompt_tokens']} prompt + "
          f"{stats['completion_tokens']} completion", file=sys.stderr)
    if args.task is not None and stats["complete"] and make_prompt is not None:
        from ..io import iter_jsonl

        scores = score_icl(args, [record for _, record in iter_jsonl(args.output_file)])
        if scores is not None:
            stats["scores"] = scores
    return stats


def _pair(args: ICLArguments, record: dict[str, Any]) -> dict[str, Any]:
    return {name: record.get(name) or getattr(args, name) for name in _RE_FIELDS}


def score_icl(args: ICLArguments, predictions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """P/R/F1 of PromptCraft answers against the raw records' own annotation (``None`` when they carry none).

    Answers are read by the ICL task's parser into typed extractions and matched as multisets, as ``evaluate``
    matches; an answer that is not in the task's format counts as a parse error and predicts nothing.
    """
    from collections import Counter

    from ..evaluate import prf

    spec = icl_task(args.task)
    tp = pred = gold = errors = annotated = 0
    for record in predictions:
        truth = spec.gold(record)
        annotated += bool(truth) or any(k in record for k in ("entity", "relation", "event", "labels"))
        found = spec.parse_answer(record.get("output"), pair=_pair(args, record))
        if found is None:
            errors += 1
            found = []
        pred, gold = pred + len(found), gold + len(truth)
        tp += sum((Counter(found) & Counter(truth)).values())
    if not annotated:
        return None
    return {**prf(tp, pred, gold), "parse_errors": errors, "tp": tp, "pred": pred, "gold": gold}


def run_icl_command(args: ICLArguments) -> int:
    """The body of ``deepke-llm icl``: failures of the endpoint exit 2 with one line, like bad input."""
    try:
        result = run_icl(args)
    except EndpointError as exc:
        print(f"deepke-llm icl: error: {exc}", file=sys.stderr)
        return 2
    if args.input_file and not args.print_prompt:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``deepke-llm icl`` from an argument list."""
    from ..cli import main as cli_main

    return cli_main(["icl", *(sys.argv[1:] if argv is None else argv)])
