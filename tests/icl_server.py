"""A real OpenAI-compatible HTTP server on 127.0.0.1 for the ICL tests, answering from the tiny model.

It speaks ``POST /v1/chat/completions`` and can be told to fail (429, 500, a hang, a malformed body); the
fixtures here are registered in ``conftest.py`` so every ICL test file can use them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deepke_llm_core.engines import EngineOptions, create_engine

SECRET = "sk-test-SECRET-0123456789"


class TinyAnswerer:
    """Chat messages -> text from the tiny model (serialized: one generation at a time, one CPU thread)."""

    def __init__(self, model_path):
        from deepke_llm_core.engines import TransformersEngine

        self.engine = TransformersEngine.load(str(model_path))
        self.tokenizer = self.engine.tokenizer
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> tuple[str, int, int]:
        import torch

        from deepke_llm_core.engines import Sampling

        temperature = float(body.get("temperature") or 0.0)
        max_tokens = min(int(body.get("max_tokens") or 8), 8)
        ids = self.engine.encode(body["messages"])
        seed = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8], 16)
        with self.lock, torch.random.fork_rng(devices=[]):
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            torch.manual_seed(seed)
            try:
                completion = self.engine.generate_ids([ids], Sampling(temperature, 1.0, max_tokens))[0]
            finally:
                torch.set_num_threads(threads)
        return completion.text, len(ids), completion.completion_tokens


class FakeOpenAI:
    def __init__(self, answer):
        self.answer = answer
        self.failures: list[str] = []
        self.always: str | None = None
        self.bodies: list[dict] = []
        self.auth: list[str] = []
        self.delay = 0.0
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, ctype: str = "application/json", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    server.bodies.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                    mode = server.failures.pop(0) if server.failures else server.always
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": {"message": "not found"}}')
                if mode == "429":
                    return self._send(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                                      headers=[("Retry-After", "0")])
                if mode == "401echo":  # some providers echo the key they rejected; the client must scrub it
                    message = f"Incorrect API key provided: {self.headers.get('Authorization', '')[7:]}"
                    return self._send(401, json.dumps({"error": {"message": message}}).encode())
                if mode in ("500", "400"):
                    return self._send(int(mode), json.dumps({"error": {"message": f"status {mode}"}}).encode())
                if mode == "garbage":
                    return self._send(200, b"<html>upstream proxy error</html>")
                if mode == "hang":
                    server.stop.wait(5)
                    return
                with server.lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    if server.delay:
                        server.stop.wait(server.delay)
                    text, prompt_tokens, completion_tokens = server.answer(body)
                finally:
                    with server.lock:
                        server.inflight -= 1
                payload = {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model"),
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}],
                           "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                     "total_tokens": prompt_tokens + completion_tokens}}
                self._send(200, json.dumps(payload).encode())

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client that timed out closed its socket
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def count(self) -> int:
        return len(self.bodies)

    def reset(self) -> None:
        self.failures, self.always, self.bodies, self.auth, self.delay = [], None, [], [], 0.0

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def tiny_answerer(tiny_qwen):
    return TinyAnswerer(tiny_qwen)


@pytest.fixture
def openai_server(tiny_answerer, monkeypatch, tmp_path):
    """A fresh server per test; the environment points every OpenAI client at it and carries a test key."""
    with FakeOpenAI(tiny_answerer) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("DEEPSEEK_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.delenv("DEEPKE_API_KEY", raising=False)
        monkeypatch.setenv("DEEPKE_LLM_CACHE", str(tmp_path / "default-cache"))
        yield server


def api_engine(server, name="ChatGPT", **overrides):
    options = dict(model_id="tiny", base_url=server.url, timeout=2.0, max_retries=3, retry_delay=0.01)
    options.update(overrides)
    return create_engine(name, EngineOptions(**options))


