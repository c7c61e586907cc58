"""The one generation interface: chat messages in, :class:`Completion` out.

Why one interface: generation used to be written four times (prediction, the widget, the server, local ICL
engines), each choosing its device and its stop tokens its own way, so a fix such as the P-Tuning KV-cache one
reached only some callers. Now ``infer``, ``icl``, ``serve``, ``extract`` and the widget all hold an
:class:`Engine`, and a prompt is always a list of chat messages: a local engine renders them with the model's
template, an endpoint sends them as they are.

Engines come in two kinds. A *local* engine (transformers, vLLM) generates a whole batch at once and reports
finished batches through :meth:`Engine.stream`; a *concurrent* engine (an HTTP endpoint) answers one request at a
time and is driven by a thread pool (``engines.runner``). Both offer :meth:`Engine.generate` for simple calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

__all__ = ["Messages", "Sampling", "Completion", "EngineOptions", "EndpointError", "Engine", "user_messages"]

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    """Decoding controls (part of the cache key and of a run's fingerprint). Temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        import math

        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens (max_new_tokens) must be a positive integer, got {self.max_tokens!r}")

    def as_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "stop": list(self.stop) if self.stop else None}
        if out["seed"] is None:
            del out["seed"]
        return out


@dataclass
class Completion:
    """One answer: its text, why generation ended (``stop``, ``length`` or ``repetition``) and what it cost."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: tuple[int, ...] = field(default=(), repr=False)


@dataclass
class EngineOptions:
    """Everything an engine may need to be built; each engine reads only its own fields.

    ``model_id`` is a local folder or Hub id for local engines and the model name an endpoint serves for API engines.
    The API key is never part of an engine's identity, cache key, saved settings or ``repr``.
    """

    model_id: str | None = None
    checkpoint_dir: str | None = None
    template: str | None = None
    system_prompt: str | None = None
    model_name: str | None = None
    bits: int | None = None
    dtype: str = "auto"
    use_gpu: bool | None = None
    trust_remote_code: bool = False
    cutoff_len: int | None = None
    batch_size: int = 16
    guided: bool | str | None = False  # "schema", "spans" (True means "schema"); engines decide per row's schema
    tensor_parallel_size: int = 1
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    timeout: float = 60.0
    max_retries: int = 3
    retry_delay: float = 1.0
    max_retry_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.cutoff_len is not None and self.cutoff_len < 1:
            raise ValueError(f"cutoff_len must be a positive number of tokens, got {self.cutoff_len}")
        if self.bits not in (None, 4, 8, 16, 32):
            raise ValueError(f"bits must be 4, 8, 16 or 32, got {self.bits}")


class EndpointError(RuntimeError):
    """A request failed for good: a non-retryable status, or retries exhausted; ``retryable`` says which."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retryable, self.retry_after = status, retryable, retry_after


def user_messages(query: str, system: str | None = None) -> Messages:
    """One user turn, after a system message unless ``system`` is ``None`` (``""`` is an explicit empty one)."""
    return ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": query}]


class Engine:
    """Base class of every engine; subclasses implement :meth:`stream` (local) or :meth:`complete` (endpoints)."""

    name: ClassVar[str] = ""
    concurrent: ClassVar[bool] = False
    default_system: ClassVar[str | None] = None  # the system message an ICL chat engine adds to every prompt

    def identity(self) -> dict[str, Any]:
        """What decides the answer besides the prompt itself: part of cache keys and run fingerprints."""
        return {"engine": self.name}

    def messages(self, query: str) -> Messages:
        """Chat messages for one user query, with this engine's default system message (if any)."""
        return user_messages(query, self.default_system)

    def stream(self, prompts: Sequence[Messages], sampling: Sampling,
               schemas: Sequence[dict | None] | None = None) -> Iterator[dict[int, Completion]]:
        """Completions as they finish, as ``{prompt index: completion}`` batches (any order)."""
        for i, messages in enumerate(prompts):
            yield {i: self.complete(messages, sampling, schemas[i] if schemas else None)}

    def complete(self, messages: Messages, sampling: Sampling, schema: dict | None = None) -> Completion:
        """One completion."""
        return self.generate([messages], sampling, [schema] if schema is not None else None)[0]

    def generate(self, prompts: Sequence[Messages], sampling: Sampling,
                 schemas: Sequence[dict | None] | None = None) -> list[Completion]:
        """Completions in prompt order."""
        done: dict[int, Completion] = {}
        for batch in self.stream(prompts, sampling, schemas):
            done.update(batch)
        return [done[i] for i in range(len(prompts))]

    def close(self) -> None:
        """Release what the engine holds (a model, a client); the engine is unusable afterwards."""
