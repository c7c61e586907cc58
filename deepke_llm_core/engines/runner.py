"""The one loop that takes a file of records through an engine: ordered, resumable, cached, bounded.

``deepke-llm infer`` (fine-tuned models on converted test files) and ``deepke-llm icl`` (in-context prompts to an
API or a local chat model) are the same job: records in, one prompt per record, the engine's answers written back
as ``output`` in input order. So they share this runner, which

1. resumes only the same run (``predict.writer``: settings fingerprint, per-record hashes), losing at most the
   batch in flight to a kill;
2. never pays twice for a request when a cache is given (``cache.ResponseCache``, keyed by engine identity,
   messages and sampling; never the API key);
3. keeps at most ``concurrency`` requests in flight for an endpoint (retries with backoff are the engine's), and
   hands a local engine whole length-grouped batches;
4. stops on a persistent failure *without* losing what it has: answers already received are written before the
   error is raised, and the error says how many records are safe.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from .base import Completion, EndpointError, Engine, Messages, Sampling
from .cache import ResponseCache

__all__ = ["run_to_file", "cache_request", "cached_complete"]


def cache_request(engine: Engine, messages: Messages, sampling: Sampling, schema: dict | None = None) -> dict[str, Any]:
    """What a cache key is computed from: engine identity, messages, sampling and schema (never the API key)."""
    request = {**engine.identity(), "messages": messages, "sampling": sampling.as_dict()}
    if schema is not None:
        request["schema"] = schema
    return request


def cached_complete(engine: Engine, messages: Messages, sampling: Sampling, cache: ResponseCache | None,
                    schema: dict | None = None) -> tuple[Completion, bool]:
    """``(completion, came_from_cache)``; a fresh answer is stored before it is returned."""
    if cache is None:
        return engine.complete(messages, sampling, schema), False
    request = cache_request(engine, messages, sampling, schema)
    key = cache.key(request)
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    completion = engine.complete(messages, sampling, schema)
    cache.put(key, request, completion)
    return completion, False


class _Tally:
    def __init__(self, records: int, already: int):
        self.stats: dict[str, Any] = {"records": records, "already_done": already, "answered": 0, "cached": 0,
                                      "requested": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self.finish: Counter = Counter()

    def add(self, completion: Completion, cached: bool) -> None:
        self.stats["answered"] += 1
        self.finish[completion.finish_reason] += 1
        if cached:
            self.stats["cached"] += 1
            return
        self.stats["requested"] += 1
        self.stats["prompt_tokens"] += completion.prompt_tokens
        self.stats["completion_tokens"] += completion.completion_tokens


def _concurrent(engine, todo, prompts, schemas, sampling, cache, concurrency, deliver) -> BaseException | None:
    """At most ``concurrency`` requests in flight; on the first failure stop submitting, keep finished answers."""
    error: BaseException | None = None
    pending: dict[Future, int] = {}
    queue = iter(todo)
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="engine") as pool:
        while True:
            while error is None and len(pending) < max(1, concurrency):
                index = next(queue, None)
                if index is None:
                    break
                pending[pool.submit(cached_complete, engine, prompts[index], sampling, cache, schemas.get(index))] = index
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
                deliver({index: completion}, cached)
    return error


def _batched(engine, todo, prompts, schemas, sampling, cache, deliver) -> BaseException | None:
    """A local engine: cached answers first, the rest streamed in the engine's batches, each saved as it finishes."""
    fresh = []
    for index in todo:
        hit = cache.get(cache.key(cache_request(engine, prompts[index], sampling, schemas.get(index)))) if cache else None
        if hit is not None:
            deliver({index: hit}, True)
        else:
            fresh.append(index)
    if not fresh:
        return None
    rows = [schemas.get(i) for i in fresh] if schemas else None
    try:
        for batch in engine.stream([prompts[i] for i in fresh], sampling, rows):
            answers = {fresh[k]: completion for k, completion in batch.items()}
            if cache:
                for index, completion in answers.items():
                    request = cache_request(engine, prompts[index], sampling, schemas.get(index))
                    cache.put(cache.key(request), request, completion)
            deliver(answers, False)
    except Exception as exc:  # noqa: BLE001 - reported after the finished answers are saved
        return exc
    return None


def run_to_file(records: list[dict], output_file: str, engine: Engine, sampling: Sampling,
                prompt_of: Callable[[dict], Messages], *, schema_of: Callable[[dict], dict | None] | None = None,
                cache: ResponseCache | None = None, concurrency: int = 4, transform: Callable[[dict], dict] | None = None,
                added: Sequence[str] = ("output",), settings: dict[str, Any] | None = None,
                progress: bool | None = None, desc: str = "generate") -> dict[str, Any]:
    """Answer every record not yet in ``output_file``; return counts, token usage and finish reasons.

    Each output line is the input record plus ``output`` (and what ``transform`` adds, named in ``added``), in input
    order. ``settings`` are what, besides the engine and sampling, decides the answers (the run's fingerprint).
    On a persistent failure the answers already received are written and the error is raised.
    """
    from tqdm import tqdm

    from ..predict.writer import OrderedResumableWriter

    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    run = {"engine": engine.identity(), "sampling": sampling.as_dict(), **(settings or {})}
    writer = OrderedResumableWriter(output_file, records, transform, run, added)
    todo = writer.todo()
    tally = _Tally(len(records), len(records) - len(todo))
    prompts = {i: prompt_of(records[i]) for i in todo}
    schemas = {i: s for i in todo if (s := schema_of(records[i])) is not None} if schema_of else {}
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="rec", desc=desc, file=sys.stderr, disable=None if progress is None else not progress)

    def deliver(answers: dict[int, Completion], cached: bool) -> None:
        writer.add({i: c.text for i, c in answers.items()})
        for completion in answers.values():
            tally.add(completion, cached)
        bar.update(len(answers))

    try:
        if not todo:
            error = None
        elif engine.concurrent:
            error = _concurrent(engine, todo, prompts, schemas, sampling, cache, concurrency, deliver)
        else:
            error = _batched(engine, todo, prompts, schemas, sampling, cache, deliver)
    finally:
        bar.close()
        complete = writer.close()
    seconds = time.perf_counter() - start
    tally.stats.update(seconds=round(seconds, 3), complete=complete, written=writer.next_index,
                       finish_reasons=dict(tally.finish), output_file=output_file)
    if todo and seconds > 0:
        tally.stats["records_per_second"] = round(tally.stats["answered"] / seconds, 2)
    if isinstance(error, EndpointError):
        raise EndpointError(f"{error}; {writer.next_index} of {len(records)} records are in {output_file} "
                            "(rerun the same command to continue)", status=error.status) from error
    if error is not None:
        raise error
    return tally.stats
