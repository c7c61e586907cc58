"""The package's own OpenAI-compatible HTTP server, for what the library servers cannot serve (``serve.py`` says
what, with the measurements): a P-Tuning adapter, an API key on a CPU machine, a served name other than the path,
OpenAI's ``stop`` semantics. It answers ``POST /v1/chat/completions`` and ``GET /v1/models``.

Generation is the transformers engine's (``engines.local``): prompts rendered with the template stored with the
adapter or model (``deepke_llm.json``), else the tokenizer's chat template; the stored system prompt is added
when a request brings none; greedy at temperature 0, stopping at EOS and the template's end-of-turn token. So a
greedy answer here equals ``deepke-llm infer``'s for the same record.

It is **not a production server**: one request generates at a time (a lock around the model), no streaming, no
batching across requests, and no authentication unless ``api_key`` is set. The transport is hardened the way a
small server on a shared machine must be: a body limit that a negative or missing ``Content-Length`` cannot
bypass, a read timeout (a client that sends less than it declared frees its thread after ``READ_TIMEOUT`` s), a
listen backlog of ``BACKLOG`` connections, and a 413 sent only after the oversized body was drained (otherwise
the client sees a connection reset instead of the answer).

From Python (a notebook, a test), in a background thread on a free port::

    with serving(tiny_base_path()) as url:          # url = "http://127.0.0.1:<port>/v1"
        ...  # OpenAI(base_url=url, api_key="unused") or create_engine("ChatGPT", EngineOptions(base_url=url))
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["BadRequest", "ChatRequest", "parse_chat_request", "ChatModel", "start_server", "serving", "serve_forever",
           "MAX_BODY_BYTES", "READ_TIMEOUT", "BACKLOG"]

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_DRAIN_BYTES = 64 * 1024 * 1024  # a larger declared body is not read: the connection is closed after the 413
READ_TIMEOUT = 30.0  # seconds a connection may stay silent while the server waits for its request or body
BACKLOG = 128  # pending connections the kernel queues (the stdlib's default, 5, reset 18-20 of 50 simultaneous ones)
ROLES = ("system", "user", "assistant")


class BadRequest(ValueError):
    """A request the server refuses; ``status`` is the HTTP status, ``param`` the offending field (if any)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


@dataclass(frozen=True)
class ChatRequest:
    """The validated fields of a chat-completion request that this server honours."""

    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


def _number(body: dict, name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            (low < value if low_open else low <= value) and value <= high):
        bound = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise BadRequest(f"'{name}' must be a number in {bound}, got {value!r}", name)
    return float(value)


def _content(message: dict, where: str) -> str:
    """A message's text: a string, or a list of ``{"type": "text", "text": ...}`` parts (joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise BadRequest(f"{where}.content must be a string or a list of text parts, got {content!r:.80}", where)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRequest("'messages' must be a non-empty list of {\"role\", \"content\"} objects", "messages")
    messages = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object, got {message!r:.80}", where)
        if message.get("role") not in ROLES:
            raise BadRequest(f"{where}.role must be one of {', '.join(ROLES)}, got {message.get('role')!r}", where)
        messages.append({"role": message["role"], "content": _content(message, where)})
    if messages[-1]["role"] != "user":
        raise BadRequest("the last message must have role 'user' (the server answers it)", "messages")
    return messages


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > 4 or not all(isinstance(s, str) and s for s in items):
        raise BadRequest(f"'stop' must be a non-empty string or a list of up to 4 of them, got {value!r:.80}", "stop")
    return tuple(items)


def _int(body: dict, name: str, low: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        raise BadRequest(f"'{name}' must be an integer{f' >= {low}' if low is not None else ''}, got {value!r}", name)
    return value


def parse_chat_request(body: Any, default_max_tokens: int = 256) -> ChatRequest:
    """Validate a ``/v1/chat/completions`` body; every refusal is a :class:`BadRequest` naming the field.

    ``max_completion_tokens`` (the SDK's newer name) wins over ``max_tokens``. Only ``n=1`` and non-streaming
    requests are served. Fields the server does not use (``frequency_penalty``, ``logprobs``, ...) are ignored.

    >>> parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}).max_tokens
    5
    """
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required: the served model's id (GET /v1/models lists it)", "model")
    if body.get("stream"):
        raise BadRequest("streaming is not supported by this server; send 'stream': false", "stream")
    if body.get("n") not in (None, 1):
        raise BadRequest(f"only n=1 is supported, got {body.get('n')!r}", "n")
    max_tokens = _int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1)
    return ChatRequest(model=model, messages=_messages(body.get("messages")),
                       max_tokens=default_max_tokens if max_tokens is None else max_tokens,
                       temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
                       top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
                       stop=_stop(body.get("stop")), seed=_int(body, "seed"))


class ChatModel:
    """A loaded model that answers chat messages; thread-safe (generation is serialized by a lock).

    Generation is the transformers engine's (``engines.local``), so a greedy answer here equals
    ``deepke-llm infer``'s for the same record.
    """

    def __init__(self, model_name_or_path: str | os.PathLike | Any, checkpoint_dir: str | os.PathLike | None = None, *,
                 model_id: str | None = None, template: str | None = None, system_prompt: str | None = None,
                 model_name: str | None = None, bits: int | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False):
        """Load ``model_name_or_path`` (+ adapter ``checkpoint_dir``), or wrap a ready ``TransformersEngine``.

        ``model_id`` is the name clients must send as ``model``; default: the adapter's or model's folder name.
        ``template`` and ``system_prompt`` default to what the adapter/model stored at training time.
        """
        from .engines.local import TransformersEngine

        if isinstance(model_name_or_path, TransformersEngine):
            self.engine = model_name_or_path
            base, adapter = str(self.engine.model_id), self.engine.adapter
        else:
            base, adapter = str(model_name_or_path), str(checkpoint_dir) if checkpoint_dir else None
            self.engine = TransformersEngine.load(base, adapter, template=template, system_prompt=system_prompt,
                                                  model_name=model_name, bits=bits, dtype=dtype,
                                                  trust_remote_code=trust_remote_code)
        self.template, self.system_prompt = self.engine.template, self.engine.system_prompt
        self.model_id = model_id or Path(adapter or base).name
        self.context = self.engine.context
        self.lock = threading.Lock()

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of the rendered prompt, exactly as ``deepke-llm infer`` renders a single-turn query."""
        if self.system_prompt is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        try:
            return self.engine.encode(list(messages))
        except ValueError as exc:
            raise BadRequest(str(exc), "messages") from None

    def complete(self, request: ChatRequest) -> dict[str, Any]:
        """``{"text", "finish_reason", "prompt_tokens", "completion_tokens"}`` for one validated request."""
        with self.lock:  # one request at a time: the tokenizer and the model are shared
            return self._complete(request)

    def _complete(self, request: ChatRequest) -> dict[str, Any]:
        from .engines import Sampling

        ids = self.prompt_ids(request.messages)
        if self.context and len(ids) >= self.context:
            raise BadRequest(f"the prompt is {len(ids)} tokens; the model's context is {self.context}", "messages")
        sampling = Sampling(request.temperature, request.top_p, request.max_tokens, request.stop or None, request.seed)
        answer = self.engine.generate_ids([ids], sampling)[0]
        return {"text": answer.text, "finish_reason": answer.finish_reason,
                "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}


def _error(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    kind = {401: "authentication_error", 404: "not_found_error"}.get(status, "invalid_request_error" if status < 500
                                                                       else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _handler(chat: ChatModel, api_key: str | None, log_requests: bool) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to one model."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "deepke-llm-serve"
        timeout = READ_TIMEOUT  # socket timeout of every read: a silent client cannot hold a thread forever

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            if log_requests:
                super().log_message(format, *args)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            given = self.headers.get("Authorization", "")
            if api_key is None or hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return True
            self._send(401, _error("missing or wrong API key (send 'Authorization: Bearer <key>')", 401))
            return False

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                return self._send(200, {"status": "ok"})
            if not self._authorized():
                return None
            if path == "/v1/models":
                return self._send(200, {"object": "list", "data": [
                    {"id": chat.model_id, "object": "model", "created": 0, "owned_by": "deepke-llm"}]})
            return self._send(404, _error(f"no route GET {path}; try POST /v1/chat/completions or GET /v1/models", 404))

        def _body(self) -> Any:
            """The JSON body; a missing, negative or oversized ``Content-Length`` is refused before anything is parsed."""
            declared = self.headers.get("Content-Length")
            if declared is None:
                raise BadRequest("a Content-Length header is required (chunked bodies are not accepted)", status=411)
            try:
                length = int(declared)
            except ValueError:
                raise BadRequest("the Content-Length header is not a number") from None
            if length < 0:
                raise BadRequest(f"the Content-Length header must be >= 0, got {length}")
            if length > MAX_BODY_BYTES:
                self._drain(length)
                raise BadRequest(f"the request body is {length} bytes; the limit is {MAX_BODY_BYTES}", status=413)
            data = self.rfile.read(length)
            if len(data) < length:
                self.close_connection = True
                raise BadRequest(f"the body ended after {len(data)} of the {length} bytes its Content-Length declared")
            try:
                return json.loads(data.decode("utf-8")) if length else None
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadRequest(f"the request body is not valid JSON: {exc}") from None

        def _drain(self, length: int) -> None:
            """Read and discard an oversized body, so the client reads our 413 instead of a connection reset."""
            self.close_connection = True
            left = length if length <= MAX_DRAIN_BYTES else 0
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if not self._authorized():
                return None
            if path != "/v1/chat/completions":
                return self._send(404, _error(f"no route POST {path}; this server answers /v1/chat/completions", 404))
            try:
                request = parse_chat_request(self._body())
                if request.model != chat.model_id:
                    raise BadRequest(f"model {request.model!r} is not served here; this server serves "
                                     f"{chat.model_id!r} (GET /v1/models)", "model", status=404)
                answer = chat.complete(request)
            except BadRequest as exc:
                return self._send(exc.status, _error(str(exc), exc.status, exc.param))
            except TimeoutError:  # the client declared more body than it sent, then went silent
                self.close_connection = True
                return self._send(408, _error(f"no complete request body within {READ_TIMEOUT:g} s", 408))
            except Exception as exc:  # noqa: BLE001 - reported to the client as a 500, the server keeps running
                return self._send(500, _error(f"generation failed: {type(exc).__name__}: {exc}", 500))
            usage = {"prompt_tokens": answer["prompt_tokens"], "completion_tokens": answer["completion_tokens"],
                     "total_tokens": answer["prompt_tokens"] + answer["completion_tokens"]}
            self._send(200, {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                             "created": int(time.time()), "model": chat.model_id,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": answer["text"]},
                                          "finish_reason": answer["finish_reason"], "logprobs": None}],
                             "usage": usage})

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a client that hangs up never keeps the process alive
    request_queue_size = BACKLOG


def _listen(chat: ChatModel, host: str, port: int, api_key: str | None, log_requests: bool) -> tuple[_Server, str]:
    try:
        httpd = _Server((host, port), _handler(chat, api_key, log_requests))
    except OSError as exc:
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return httpd, f"http://{shown}:{httpd.server_address[1]}/v1"


def _chat_model(model: str | os.PathLike | ChatModel, checkpoint_dir: str | os.PathLike | None,
                options: dict[str, Any]) -> ChatModel:
    if isinstance(model, ChatModel):
        if checkpoint_dir or options:
            raise ValueError("pass loading options to ChatModel(...), not together with a loaded ChatModel")
        return model
    return ChatModel(model, checkpoint_dir, **options)


def start_server(model: str | os.PathLike | ChatModel, checkpoint_dir: str | os.PathLike | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, api_key: str | None = None, log_requests: bool = False,
                 **load_options: Any) -> tuple[str, Callable[[], None]]:
    """Serve a model in a background thread; returns ``(base_url, stop)``.

    ``model`` is a folder or Hub id (loaded with ``checkpoint_dir`` and ``load_options``, see :class:`ChatModel`)
    or an already loaded :class:`ChatModel`. ``port=0`` picks a free port. ``base_url`` ends in ``/v1``, ready for
    ``OpenAI(base_url=...)`` or ``EngineOptions(base_url=...)``. ``stop()`` shuts the server down (idempotent).
    """
    httpd, url = _listen(_chat_model(model, checkpoint_dir, load_options), host, port, api_key, log_requests)
    thread = threading.Thread(target=httpd.serve_forever, name=f"deepke-llm-serve:{url}", daemon=True)
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            httpd.shutdown()
            httpd.server_close()
            thread.join()

    return url, stop


@contextmanager
def serving(model: str | os.PathLike | ChatModel, checkpoint_dir: str | os.PathLike | None = None,
            **options: Any) -> Iterator[str]:
    """``with serving(path) as url: ...``: :func:`start_server`, stopped when the block ends."""
    url, stop = start_server(model, checkpoint_dir, **options)
    try:
        yield url
    finally:
        stop()


def serve_forever(chat: ChatModel, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                  log_requests: bool = True) -> None:
    """Serve a loaded model in the foreground until interrupted (``deepke-llm serve --server builtin``)."""
    import sys

    httpd, url = _listen(chat, host, port, api_key, log_requests)
    print(f"serving {chat.model_id!r} (template {chat.template}) at {url}; not a production server; Ctrl-C stops it",
          file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
