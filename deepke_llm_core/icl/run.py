"""``deepke-llm icl``: the draft README's ICL flags, one text or a whole file, an API or a local model.

Why the flags are parsed here and not with ``type=bool``: upstream's ``--in_context`` used ``type=bool``, so
``--in_context False`` meant *True* (SPEC.md §10); ours reads true/false/1/0/yes/no, and a bare flag means true.
Unset sampling flags get real defaults instead of upstream's ``None``. Every per-task requirement of the draft
README's table is checked before anything is loaded or sent: ``re`` needs the head and tail entities and their
types, ``da`` needs ``--labels``; demonstrations are validated before the first request.

Single text: ``--text_input``; the answer goes to stdout. A file: ``--input_file`` and ``--output_file``; records
plus ``output`` are written (resumable), a run config without the API key beside them, and a usage summary is
printed. ``--print_prompt`` prints the user message (plus a newline, as upstream's ``print``) and exits
without creating an engine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, TextIO

from ..io import DataError
from .engines import EndpointError, EngineOptions, Sampling, create_engine, engine_names
from .prompts import ICL_TASKS, build_icl_prompt, check_task, normalize_language

__all__ = ["build_icl_parser", "parse_icl_args", "str2bool", "parse_labels", "check_args", "icl_prompt", "run_icl", "main"]

_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off", "none", "null", ""}
_RE_FIELDS = ("head_entity", "head_type", "tail_entity", "tail_type")


def str2bool(value: str | bool) -> bool:
    """``"false"``, ``"False"``, ``"0"``, ``"no"`` are False (upstream's ``type=bool`` made them True)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_labels(value: str | list | None) -> list[str] | None:
    """``"PER, ORG"`` or ``"人物，公司"`` (either comma) -> ``["PER", "ORG"]``; empty -> ``None``."""
    if value is None:
        return None
    items = value if isinstance(value, list) else re.split(r"[,，]", value)
    labels = [str(item).strip() for item in items if str(item).strip()]
    return labels or None


def build_icl_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepke-llm icl", description="In-context learning with an API or a local chat model.")
    p.add_argument("--engine", default=None, help=f"one of {', '.join(engine_names())}")
    p.add_argument("--model_id", default=None, help="API model name, or a local folder / Hub id for local engines")
    p.add_argument("--api_key", default=None, help="default: $OPENAI_API_KEY or $DEEPKE_API_KEY (never saved or logged)")
    p.add_argument("--base_url", default=None, help="OpenAI-compatible endpoint (vLLM, Ollama, DashScope, ...)")
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    p.add_argument("--top_p", type=float, default=1.0)
    p.add_argument("--max_tokens", type=int, default=512)
    p.add_argument("--stop", action="append", default=None, help="a stop string (repeatable)")
    p.add_argument("--task", default=None, help=f"one of {', '.join(ICL_TASKS)}")
    p.add_argument("--language", default="en", choices=["ch", "zh", "en"])
    p.add_argument("--in_context", type=str2bool, nargs="?", const=True, default=False,
                   help="use demonstrations: true/false (a bare flag means true)")
    p.add_argument("--instruction", default=None, help="custom instruction, replaces the default (not recommended)")
    p.add_argument("--data_path", default=None, help="folder of <task>_<language>.json demonstrations; default data/icl")
    p.add_argument("--text_input", default=None, help="the text; for da, the relation label")
    p.add_argument("--domain", default=None)
    p.add_argument("--labels", default=None, help="comma-separated labels (required for da)")
    for name in _RE_FIELDS:
        p.add_argument(f"--{name}", default=None, help="required for re")
    p.add_argument("--print_prompt", action="store_true", help="print the user message and exit (no engine call)")
    batch = p.add_argument_group("batch")
    batch.add_argument("--input_file", default=None, help="IEPile/InstructIE test records or raw text records (JSON Lines)")
    batch.add_argument("--output_file", default=None, help="prediction records (resumes when it exists)")
    batch.add_argument("--concurrency", type=int, default=4, help="requests in flight (API engines)")
    batch.add_argument("--batch_size", type=int, default=8, help="generation batch (local engines)")
    batch.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    batch.add_argument("--max_retries", type=int, default=3, help="retries on 429/5xx/timeouts/bad bodies")
    batch.add_argument("--retry_delay", type=float, default=1.0, help="first backoff in seconds (doubles each retry)")
    batch.add_argument("--cache_dir", default=None, help="answer cache; batch default: $DEEPKE_LLM_CACHE/icl")
    batch.add_argument("--no_cache", action="store_true", help="neither read nor write the cache")
    batch.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar on stderr")
    p.add_argument("--trust_remote_code", type=str2bool, default=None, help="local engines; default per engine")
    return p


def _yaml_argv(path: str) -> list[str]:
    """Upstream's ICL YAML configs as flags (nulls skipped, booleans as true/false, lists comma-joined)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    if not isinstance(config, dict):
        raise DataError(path, None, None, "expected a mapping of flag names to values")
    argv: list[str] = []
    for key, value in config.items():
        if value is None or (key == "print_prompt" and value is False):
            continue
        if key == "print_prompt":
            argv.append("--print_prompt")
        elif isinstance(value, list):
            argv += [f"--{key}", ",".join(str(v) for v in value)]
        else:
            argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def parse_icl_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags, or one YAML file of them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        argv = _yaml_argv(argv[0])
    return build_icl_parser().parse_args(argv)


def check_args(args: argparse.Namespace, *, batch: bool) -> None:
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
        if args.task == "re":
            missing = [f"--{name}" for name in _RE_FIELDS if not getattr(args, name)]
            if missing:
                raise ValueError(f"task re needs {', '.join(missing)} (the entity pair and its types)")
    elif not args.output_file and not args.print_prompt:
        raise ValueError("--input_file needs --output_file (where the prediction records go)")
    if args.task == "da" and not args.labels:
        raise ValueError("task da needs --labels (the entity types, e.g. 'person, organization')")
    if args.engine is None and not args.print_prompt:
        raise ValueError(f"--engine is required; valid engines: {', '.join(engine_names())}")
    if args.concurrency < 1 or args.batch_size < 1:
        raise ValueError("--concurrency and --batch_size must be at least 1")


def icl_prompt(args: argparse.Namespace, text: str, demos: list[dict] | None, fields: dict[str, Any] | None = None) -> str:
    """The PromptCraft user message; ``fields`` (a record) may supply the re pair, else the flags do."""
    fields = fields or {}
    pair = {name: fields.get(name) or getattr(args, name) for name in _RE_FIELDS}
    if args.task == "re" and not all(pair.values()):
        raise ValueError(f"task re needs {', '.join(n for n, v in pair.items() if not v)} for the text {text[:40]!r}")
    return build_icl_prompt(args.task, args.language, text, domain=args.domain, labels=args.labels,
                            examples=demos, instruction=args.instruction, **pair)


def _engine(args: argparse.Namespace):
    options = EngineOptions(model_id=args.model_id, api_key=args.api_key, base_url=args.base_url, timeout=args.timeout,
                            max_retries=args.max_retries, retry_delay=args.retry_delay, batch_size=args.batch_size,
                            trust_remote_code=args.trust_remote_code)
    return create_engine(args.engine, options)


def _saved_config(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"api_key", "print_prompt", "progress"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def run_icl(args: argparse.Namespace, out: TextIO | None = None) -> dict[str, Any]:
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
        from .batch import cached_complete
        from .cache import ResponseCache

        engine = _engine(args)
        cache = ResponseCache(args.cache_dir) if args.cache_dir and not args.no_cache else None
        completion, _ = cached_complete(engine, engine.messages(prompt), sampling, cache)
        out.write(completion.text + "\n")
        return {"output": completion.text, "prompt_tokens": completion.prompt_tokens,
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
    from .cache import ResponseCache, default_cache_dir

    engine = _engine(args)
    cache = None if args.no_cache else ResponseCache(args.cache_dir or default_cache_dir())
    os.makedirs(os.path.dirname(os.path.abspath(args.output_file)), exist_ok=True)
    with open(f"{args.output_file}.config.json", "w", encoding="utf-8") as handle:
        json.dump(_saved_config(args), handle, ensure_ascii=False, indent=2)
    stats = run_batch(records, args.output_file, engine, sampling, make_prompt=make_prompt, cache=cache,
                      concurrency=args.concurrency, batch_size=args.batch_size, progress=args.progress)
    print(f"icl: {stats['answered']} answered ({stats['cached']} from cache, {stats['requested']} requested), "
          f"{stats['already_done']} already done; tokens: {stats['prompt_tokens']} prompt + "
          f"{stats['completion_tokens']} completion", file=sys.stderr)
    return stats


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``deepke-llm icl``: failures of the endpoint exit 2 with one line, like bad input."""
    args = parse_icl_args(argv)
    try:
        result = run_icl(args)
    except EndpointError as exc:
        print(f"deepke-llm icl: error: {exc}", file=sys.stderr)
        return 2
    if args.input_file and not args.print_prompt:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0
