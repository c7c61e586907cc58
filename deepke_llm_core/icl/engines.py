"""ICL engines by registry: an OpenAI-compatible endpoint, or a local transformers chat model.

Why a registry of small classes: upstream kept an ``if engine == ...`` chain per script and a whitelist of retired
models, then broke with ``openai>=1.0`` (USER_REPORTS.md #24). Here an engine is one class with a ``name``; the
OpenAI-compatible one uses the current ``openai`` SDK's ``OpenAI(base_url=...)`` client, so the same class serves
OpenAI, DeepSeek, DashScope's compatible mode, vLLM and Ollama. Adding an engine is one subclass plus
``@register``.

Retries are ours, not the SDK's (``max_retries=0`` there): 429, 5xx, timeouts, dropped connections and bodies that
are not JSON are retried with exponential backoff (honouring ``Retry-After``), everything else fails at once with
an :class:`EndpointError` that says what the endpoint did. The API key lives only inside the SDK client; it is
never logged, echoed in errors, cached or saved.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

__all__ = [
    "Sampling",
    "Completion",
    "EngineOptions",
    "EndpointError",
    "Engine",
    "OpenAICompatibleEngine",
    "LocalChatEngine",
    "ENGINES",
    "register",
    "engine_names",
    "create_engine",
    "resolve_api_key",
]

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    """Sampling controls sent with every request (and part of the cache key). Temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop) if self.stop else None}


@dataclass
class Completion:
    """One answer and the tokens it cost (``0`` where the engine does not report usage)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class EngineOptions:
    """Everything an engine may need; each engine reads only its own fields."""

    model_id: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    timeout: float = 60.0
    max_retries: int = 3
    retry_delay: float = 1.0
    max_retry_delay: float = 30.0
    batch_size: int = 8
    trust_remote_code: bool | None = None

    def __repr__(self) -> str:  # never show the key
        return f"EngineOptions(model_id={self.model_id!r}, base_url={self.base_url!r}, api_key={'***' if self.api_key else None})"


class EndpointError(RuntimeError):
    """A request failed for good: a non-retryable status, or retries exhausted; ``retryable`` says which."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retryable, self.retry_after = status, retryable, retry_after


class Engine:
    """The interface: ``messages(prompt)`` and ``complete(messages, sampling)``.

    ``concurrent`` engines (remote endpoints) are driven by a thread pool; the others get whole batches through
    ``complete_batch`` (a local model generates a padded batch faster than one prompt at a time).
    """

    name: ClassVar[str] = ""
    concurrent: ClassVar[bool] = True
    system_prompt: ClassVar[str | None] = None

    def __init__(self, options: EngineOptions):
        self.options = options

    def identity(self) -> dict[str, Any]:
        """What decides the answer besides the request itself (part of the cache key; never the key)."""
        return {"engine": self.name, "model": self.options.model_id}

    def messages(self, prompt: str) -> Messages:
        """Chat messages for a user prompt: the engine's system message (if any), then the prompt."""
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return head + [{"role": "user", "content": prompt}]

    def complete(self, messages: Messages, sampling: Sampling) -> Completion:
        raise NotImplementedError

    def complete_batch(self, batch: Sequence[Messages], sampling: Sampling) -> list[Completion]:
        return [self.complete(m, sampling) for m in batch]


ENGINES: dict[str, type[Engine]] = {}


def register(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make an engine available by its ``name``."""
    ENGINES[cls.name] = cls
    return cls


def engine_names() -> list[str]:
    return list(ENGINES)


def resolve_api_key(api_key: str | None, env_names: Sequence[str] = ("OPENAI_API_KEY", "DEEPKE_API_KEY")) -> str | None:
    """``--api_key`` if given, else the first non-empty environment variable of ``env_names``."""
    if api_key:
        return api_key
    for name in env_names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _retry_after(headers: Any) -> float | None:
    try:
        value = float(headers.get("retry-after"))
    except (TypeError, ValueError, AttributeError):
        return None
    return value if value >= 0 else None


@register
class OpenAICompatibleEngine(Engine):
    """Chat completions on any OpenAI-compatible endpoint (``--base_url``), one user message per request."""

    name = "ChatGPT"
    default_model: ClassVar[str] = "gpt-4o-mini"
    default_base_url: ClassVar[str | None] = None  # None: $OPENAI_BASE_URL, else the SDK's default (api.openai.com)
    key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY", "DEEPKE_API_KEY")
    base_url_env: ClassVar[str] = "OPENAI_BASE_URL"

    def __init__(self, options: EngineOptions):
        super().__init__(options)
        self.model_id = options.model_id or self.default_model
        self.base_url = options.base_url or os.environ.get(self.base_url_env) or self.default_base_url
        self._key = resolve_api_key(options.api_key, self.key_env)
        if not self._key:
            raise ValueError(f"engine {self.name} needs an API key: pass --api_key or set "
                             f"{' or '.join(self.key_env)} in the environment")
        self._client: Any = None
        self._client_lock = threading.Lock()  # batch threads share one client (and its connection pool)
        self._random = random.Random()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, base_url={self.base_url!r})"

    def identity(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model_id, "base_url": self.base_url}

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                try:
                    import openai
                except ImportError as exc:
                    raise ImportError("the ChatGPT/DeepSeek engines need the openai SDK: pip install 'openai>=1.0'") from exc
                self._client = openai.OpenAI(api_key=self._key, base_url=self.base_url, timeout=self.options.timeout,
                                             max_retries=0)
            return self._client

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _once(self, messages: Messages, sampling: Sampling) -> Completion:
        """One HTTP request; raises :class:`EndpointError` with ``retryable`` set."""
        import openai

        params: dict[str, Any] = {"temperature": sampling.temperature, "top_p": sampling.top_p,
                                  "max_tokens": sampling.max_tokens}
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        try:
            raw = self.client.chat.completions.with_raw_response.create(model=self.model_id, messages=messages, **params)
        except openai.APITimeoutError:
            raise EndpointError(f"{self.base_url}: no answer within --timeout {self.options.timeout:g}s", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise EndpointError(f"{self.base_url}: connection failed: {self._scrub(str(exc))}", retryable=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            raise EndpointError(f"{self.base_url}: HTTP {status}: {self._scrub(str(exc))[:300]}", status=status,
                                retryable=status in (408, 409, 429) or status >= 500,
                                retry_after=_retry_after(exc.response.headers)) from None
        body = raw.http_response.text
        try:
            data = json.loads(body)
            choice = data["choices"][0]["message"]
            text = choice.get("content") or ""
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise EndpointError(f"{self.base_url}: the answer is not an OpenAI chat-completion JSON body: "
                                f"{self._scrub(body[:200])!r}", status=raw.http_response.status_code, retryable=True) from None
        usage = data.get("usage") or {}
        return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def complete(self, messages: Messages, sampling: Sampling) -> Completion:
        """Send one chat request, retrying 429/5xx/timeouts/garbage with exponential backoff."""
        attempts = self.options.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._once(messages, sampling)
            except EndpointError as exc:
                if not exc.retryable or attempt == attempts - 1:
                    if exc.retryable:
                        raise EndpointError(f"{exc} (gave up after {attempts} attempts)", status=exc.status) from None
                    raise
                delay = min(self.options.retry_delay * 2 ** attempt, self.options.max_retry_delay)
                if exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), self.options.max_retry_delay)
                time.sleep(delay * self._random.uniform(0.75, 1.0))
        raise AssertionError("unreachable")


@register
class DeepSeekEngine(OpenAICompatibleEngine):
    """DeepSeek's OpenAI-compatible API (default ``https://api.deepseek.com``)."""

    name = "DeepSeek"
    default_model = "deepseek-chat"
    default_base_url = "https://api.deepseek.com"
    key_env = ("DEEPSEEK_API_KEY", "DEEPKE_API_KEY", "OPENAI_API_KEY")
    base_url_env = "DEEPSEEK_BASE_URL"


@register
class LocalChatEngine(Engine):
    """A local transformers chat model, rendered with its own chat template, batched greedy (``HFEngine``)."""

    name = "Qwen"
    concurrent = False
    system_prompt = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    remote_code: ClassVar[bool] = False

    def __init__(self, options: EngineOptions):
        super().__init__(options)
        if not options.model_id:
            raise ValueError(f"engine {self.name} needs --model_id: a local folder or a Hugging Face id of a chat model")
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from ..models import load_model_and_tokenizer

            trust = self.remote_code if self.options.trust_remote_code is None else self.options.trust_remote_code
            import torch

            # On a GPU, spread the weights over the visible devices (as `deepke-llm infer` does); else CPU.
            device_map = "auto" if torch.cuda.is_available() else None
            model, tokenizer = load_model_and_tokenizer(self.options.model_id, trust_remote_code=trust, device_map=device_map)
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError(f"{self.options.model_id} has no chat template; ICL needs a chat (instruct) model")
            self._loaded = (model, tokenizer)
        return self._loaded

    def complete(self, messages: Messages, sampling: Sampling) -> Completion:
        return self.complete_batch([messages], sampling)[0]

    def complete_batch(self, batch: Sequence[Messages], sampling: Sampling) -> list[Completion]:
        from ..encoding import encode
        from ..predict.hf import HFEngine

        model, tokenizer = self._load()
        generator = HFEngine(model, tokenizer, "auto", sampling.max_tokens, sampling.temperature, sampling.top_p)
        prompts = [encode(tokenizer, tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True))
                   for m in batch]
        out = []
        for start in range(0, len(prompts), max(1, self.options.batch_size)):
            chunk = prompts[start:start + max(1, self.options.batch_size)]
            for ids, text in zip(chunk, generator.generate(chunk)):
                for stop in sampling.stop or ():
                    text = text.split(stop, 1)[0]
                text = text.strip()
                out.append(Completion(text, len(ids), len(encode(tokenizer, text))))
        return out


@register
class LLaMAEngine(LocalChatEngine):
    name = "LLaMA"
    system_prompt = "You are a helpful assistant."


@register
class MiniCPMEngine(LocalChatEngine):
    name = "MiniCPM"
    system_prompt = "You are a helpful assistant."
    remote_code = True


@register
class ChatGLMEngine(LocalChatEngine):
    name = "ChatGLM"
    system_prompt = "You are a helpful assistant."
    remote_code = True


def create_engine(name: str, options: EngineOptions) -> Engine:
    """Instantiate a registered engine; an unknown name lists the valid ones (case-insensitive match)."""
    match = {key.lower(): cls for key, cls in ENGINES.items()}.get((name or "").lower())
    if match is None:
        raise ValueError(f"unknown engine {name!r}; valid engines: {', '.join(engine_names())}")
    return match(options)
