"""Batch ICL: a whole test file through an engine, writing records ``deepke-llm evaluate`` scores.

Why this shape: an API run over thousands of records is slow, rate-limited and paid, so it must (1) keep a bounded
number of requests in flight, (2) survive 429s, 5xx and hangs (the engine retries with backoff), (3) never pay
twice for the same request (``cache.py``), (4) survive a kill (``OrderedResumableWriter``: each answer is durable
the moment it arrives; a rerun skips every record already written), and (5) stop on a persistent failure *without*
losing what it has: answers already received are written before the error is raised.

Records with an ``instruction`` (IEPile / InstructIE test files from ``deepke-llm convert``, or KnowLM-style
``instruction`` + ``input``) are sent exactly as they are, the same query a fine-tuned model reads, so API and
fine-tuned models are scored on the same footing. Records without one (raw ``text`` records) get the PromptCraft
prompt that ``make_prompt`` builds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..io import DataError, iter_jsonl
from ..prompts import query_of
from .cache import ResponseCache
from .engines import Completion, EndpointError, Engine, Messages, Sampling

__all__ = ["read_batch_records", "record_prompt", "cached_complete", "run_batch"]


def read_batch_records(path: str) -> list[dict]:
    """JSON Lines records, each an object with a non-empty ``instruction`` or ``text``; errors name file and line."""
    records = []
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict):
            raise DataError(path, number, None, "expected a JSON object")
        if not (isinstance(record.get("instruction"), str) and record["instruction"]) and \
                not (isinstance(record.get("text"), str) and record["text"]):
            raise DataError(path, number, "instruction", "missing: expected an instruction record (deepke-llm convert "
                            "--split test) or a raw record with a non-empty 'text'")
        records.append(record)
    return records


def record_prompt(record: dict, make_prompt: Callable[[dict], str] | None) -> str:
    """The user message for a record: its instruction as it is, else the PromptCraft prompt of its text."""
    if isinstance(record.get("instruction"), str) and record["instruction"]:
        return query_of(record)
    if make_prompt is None:
        raise ValueError("a record without 'instruction' needs a PromptCraft prompt: pass --task")
    return make_prompt(record)


def cache_request(engine: Engine, messages: Messages, sampling: Sampling) -> dict[str, Any]:
    """What the cache key is computed from: engine identity, messages and sampling (never the API key)."""
    return {**engine.identity(), "messages": messages, "sampling": sampling.as_dict()}


def cached_complete(engine: Engine, messages: Messages, sampling: Sampling,
                    cache: ResponseCache | None) -> tuple[Completion, bool]:
    """``(completion, came_from_cache)``; a fresh answer is stored before it is returned."""
    if cache is None:
        return engine.complete(messages, sampling), False
    request = cache_request(engine, messages, sampling)
    key = cache.key(request)
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    completion = engine.complete(messages, sampling)
    cache.put(key, request, completion)
    return completion, False


class _Tally:
    def __init__(self, records: int, already: int):
        self.stats: dict[str, Any] = {"records": records, "already_done": already, "answered": 0, "cached": 0,
                                      "requested": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def add(self, completion: Completion, cached: bool) -> None:
        self.stats["answered"] += 1
        if cached:
            self.stats["cached"] += 1
            return
        self.stats["requested"] += 1
        self.stats["prompt_tokens"] += completion.prompt_tokens
        self.stats["completion_tokens"] += completion.completion_tokens


def _run_concurrent(engine, todo, messages, sampling, cache, concurrency, writer, tally, bar) -> BaseException | None:
    """At most ``concurrency`` requests in flight; on the first failure stop submitting, keep finished answers."""
    error: BaseException | None = None
    pending: dict[Future, int] = {}
    queue = iter(todo)
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="icl") as pool:
        while True:
            while error is None and len(pending) < max(1, concurrency):
                index = next(queue, None)
                if index is None:
                    break
                pending[pool.submit(cached_complete, engine, messages[index], sampling, cache)] = index
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    completion, cached = future.result()
                except Exception as exc:  # noqa: BLE001 - reported after the finished answers are saved
                    error = error or exc
                    continue
                writer.add({index: completion.text})
                tally.add(completion, cached)
                bar.update(1)
    return error


def _run_batched(engine, todo, messages, sampling, cache, batch_size, writer, tally, bar) -> BaseException | None:
    """Local models: cached answers first, the rest in generation batches; each batch is saved as it finishes."""
    for start in range(0, len(todo), max(1, batch_size)):
        chunk = todo[start:start + max(1, batch_size)]
        fresh = []
        for index in chunk:
            request = cache_request(engine, messages[index], sampling) if cache else None
            hit = cache.get(cache.key(request)) if cache else None
            if hit is not None:
                writer.add({index: hit.text})
                tally.add(hit, True)
                bar.update(1)
            else:
                fresh.append(index)
        if not fresh:
            continue
        try:
            completions = engine.complete_batch([messages[i] for i in fresh], sampling)
        except Exception as exc:  # noqa: BLE001
            return exc
        for index, completion in zip(fresh, completions):
            if cache:
                request = cache_request(engine, messages[index], sampling)
                cache.put(cache.key(request), request, completion)
            tally.add(completion, False)
            bar.update(1)
        writer.add({i: c.text for i, c in zip(fresh, completions)})
    return None


def run_batch(records: list[dict], output_file: str, engine: Engine, sampling: Sampling, *,
              make_prompt: Callable[[dict], str] | None = None, cache: ResponseCache | None = None,
              concurrency: int = 4, batch_size: int = 8, progress: bool | None = None) -> dict[str, Any]:
    """Answer every record not yet in ``output_file``; return counts and token usage.

    Each output line is the input record plus ``output`` (the raw answer), in input order. On a persistent
    failure the answers already received are written and the error is raised; rerunning continues from there.
    """
    from tqdm import tqdm

    from ..predict.writer import OrderedResumableWriter

    writer = OrderedResumableWriter(output_file, records)
    todo = writer.todo()
    tally = _Tally(len(records), len(records) - len(todo))
    messages = {i: engine.messages(record_prompt(records[i], make_prompt)) for i in todo}
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="rec", desc=f"icl {engine.name}", file=sys.stderr,
               disable=None if progress is None else not progress)
    try:
        if engine.concurrent:
            error = _run_concurrent(engine, todo, messages, sampling, cache, concurrency, writer, tally, bar)
        else:
            error = _run_batched(engine, todo, messages, sampling, cache, batch_size, writer, tally, bar)
    finally:
        bar.close()
        complete = writer.close()
    tally.stats.update(seconds=round(time.perf_counter() - start, 3), complete=complete,
                       written=writer.next_index)
    if isinstance(error, EndpointError):
        raise EndpointError(f"{error}; {writer.next_index} of {len(records)} records are in {output_file} "
                            "(rerun the same command to continue)", status=error.status) from error
    if error is not None:
        raise error
    return tally.stats
