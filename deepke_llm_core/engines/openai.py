"""OpenAI-compatible endpoints: OpenAI, DeepSeek, DashScope's compatible mode, vLLM's and transformers' servers,
Ollama, ``deepke-llm serve``.

Why the official ``openai`` SDK with ``base_url``: upstream kept an ``if engine == ...`` chain per script and a
whitelist of retired models, then broke with ``openai>=1.0`` (USER_REPORTS.md #24); one client class with a
``base_url`` serves every compatible endpoint. Retries are ours, not the SDK's (``max_retries=0`` there): 429,
5xx, timeouts, dropped connections and bodies that are not JSON are retried with exponential backoff (honouring
``Retry-After``), everything else fails at once with an :class:`EndpointError` that says what the endpoint did.
The API key lives only inside the SDK client; it is never logged, echoed in errors, cached or saved, and it is
scrubbed from answers (an endpoint that echoes it back does not get it written to a prediction file).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from .base import Completion, EndpointError, Engine, EngineOptions, Messages, Sampling

SPANS_NEED_LOCAL = "--guided spans needs a local engine (hf or vllm); an endpoint takes --guided schema"

__all__ = ["OpenAICompatibleEngine", "DeepSeekEngine", "resolve_api_key"]


def resolve_api_key(api_key: str | None, env_names: Sequence[str] = ("OPENAI_API_KEY", "DEEPKE_API_KEY")) -> str | None:
    """``api_key`` if given, else the first non-empty environment variable of ``env_names``."""
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


class OpenAICompatibleEngine(Engine):
    """Chat completions on any OpenAI-compatible endpoint (``--base_url``), one request per prompt."""

    name: ClassVar[str] = "ChatGPT"
    concurrent: ClassVar[bool] = True
    default_model: ClassVar[str] = "gpt-4o-mini"
    default_base_url: ClassVar[str | None] = None  # None: $OPENAI_BASE_URL, else the SDK's default (api.openai.com)
    key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY", "DEEPKE_API_KEY")
    base_url_env: ClassVar[str] = "OPENAI_BASE_URL"

    def __init__(self, options: EngineOptions):
        self.options = options
        self.model_id = options.model_id or self.default_model
        self.base_url = options.base_url or os.environ.get(self.base_url_env) or self.default_base_url
        self._key = resolve_api_key(options.api_key, self.key_env)
        if not self._key and options.base_url:
            self._key = "EMPTY"  # a self-hosted endpoint (vLLM, transformers serve) that takes no key; 401 if it does
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
        return text.replace(self._key, "***") if self._key and self._key != "EMPTY" else text

    def _once(self, messages: Messages, sampling: Sampling, schema: dict | None) -> Completion:
        """One HTTP request; raises :class:`EndpointError` with ``retryable`` set."""
        import openai

        params: dict[str, Any] = {"temperature": sampling.temperature, "top_p": sampling.top_p,
                                  "max_tokens": sampling.max_tokens}
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            params["seed"] = sampling.seed
        if schema is not None:  # structured outputs (OpenAI, vLLM's server): the answer must match the schema
            if "x-input" in schema:  # predict.spans: a grammar over the input's substrings, not a JSON Schema
                raise ValueError(SPANS_NEED_LOCAL)
            params["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "extraction", "schema": schema, "strict": True}}
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
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise EndpointError(f"{self.base_url}: the answer is not an OpenAI chat-completion JSON body: "
                                f"{self._scrub(body[:200])!r}", status=raw.http_response.status_code, retryable=True) from None
        usage = data.get("usage") or {}
        return Completion(self._scrub(text), str(choice.get("finish_reason") or "stop"),
                          int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def complete(self, messages: Messages, sampling: Sampling, schema: dict | None = None) -> Completion:
        """Send one chat request, retrying 429/5xx/timeouts/garbage with exponential backoff."""
        attempts = self.options.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._once(messages, sampling, schema)
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


class DeepSeekEngine(OpenAICompatibleEngine):
    """DeepSeek's OpenAI-compatible API (default ``https://api.deepseek.com``)."""

    name = "DeepSeek"
    default_model = "deepseek-chat"
    default_base_url = "https://api.deepseek.com"
    key_env = ("DEEPSEEK_API_KEY", "DEEPKE_API_KEY", "OPENAI_API_KEY")
    base_url_env = "DEEPSEEK_BASE_URL"
