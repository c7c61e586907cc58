"""``deepke-llm serve`` and the package's own server on the committed tiny IE base, through the real openai SDK.

The launcher (``serve.py``): ``deepke-llm serve`` runs ``transformers serve`` and its greedy answers equal the
transformers engine's; an adapter trained with a legacy template is merged and served with that template, and
answers as base + adapter do in-process; every legacy template renders through the generated chat template exactly
as ``render_prompt`` renders it; the vLLM command and the refusals are checked without a GPU.

The builtin server (``builtin_server.py``): greedy answers equal what the transformers engine generates locally and
what ``deepke-llm infer`` writes; ``max_tokens``, ``stop``, ``temperature``/``seed`` and ``usage`` behave as the
OpenAI API documents; bad requests get a 4xx naming the field; concurrent requests are all answered; a base plus a
LoRA adapter is served as it loads in-process; the transport refuses a negative ``Content-Length``, times out a
client that sends less than it declared, answers 50 simultaneous connections, and drains a body before its 413.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from deepke_llm_core import builtin_server
from deepke_llm_core.serve import (ChatModel, legacy_chat_template, parse_chat_request, start_server,
                                   vllm_serve_command)
from deepke_llm_core.tiny_base import tiny_base_path

from .conftest import ROOT, read_lines, write_lines

openai = pytest.importorskip("openai")

MODEL = "tiny-ie-base"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A 0.3M-parameter model generates many times faster on one thread than on two contended ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chat_model() -> ChatModel:
    return ChatModel(tiny_base_path())


@pytest.fixture(scope="module")
def url(chat_model):
    base_url, stop = start_server(chat_model)
    yield base_url
    stop()


@pytest.fixture(scope="module")
def local_hf():
    """The same base, loaded separately, generating with the transformers engine (no server involved)."""
    from deepke_llm_core.engines import Sampling, TransformersEngine

    engine = TransformersEngine.load(tiny_base_path())

    def generate(messages, max_tokens=128):
        ids = engine.encode(messages)
        return engine.generate_ids([ids], Sampling(max_tokens=max_tokens))[0].text, ids, engine.tokenizer

    return generate


@pytest.fixture(scope="module")
def records():
    return read_lines(tiny_base_path() / "held_out" / "NER-en.json")[:6]


def client(url, **kw):
    return openai.OpenAI(base_url=url, api_key="unused-local", max_retries=0, **kw)


def user(text):
    return [{"role": "user", "content": text}]


def post(url, body, path="/chat/completions", headers=None):
    """Raw POST (bytes or a JSON value) -> (status, parsed body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_sdk_greedy_answer_equals_the_local_hf_engine(url, local_hf, records):
    sdk = client(url)
    for record in records[:2]:
        messages = user(record["instruction"])
        expected, ids, tokenizer = local_hf(messages)
        reply = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=128, temperature=0)
        choice = reply.choices[0]
        assert choice.message.content == expected and expected.startswith("{")
        assert choice.finish_reason == "stop" and reply.model == MODEL
        assert reply.usage.prompt_tokens == len(ids)
        assert reply.usage.completion_tokens == len(tokenizer(expected, add_special_tokens=False)["input_ids"])
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_models_lists_the_served_id(url):
    assert [m.id for m in client(url).models.list().data] == [MODEL]


def test_max_tokens_cuts_the_answer(url, local_hf, records):
    messages = user(records[0]["instruction"])
    full, _, tokenizer = local_hf(messages)
    reply = client(url).chat.completions.create(model=MODEL, messages=messages, max_tokens=4, temperature=0)
    first4 = tokenizer.decode(tokenizer(full, add_special_tokens=False)["input_ids"][:4])
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 4
    assert reply.choices[0].message.content == first4 and full.startswith(first4) and len(first4) < len(full)


def test_stop_string_ends_the_answer_before_it(url, local_hf, records):
    messages = user(records[0]["instruction"])
    full, _, _ = local_hf(messages)
    assert '"location"' in full
    reply = client(url).chat.completions.create(model=MODEL, messages=messages, max_tokens=128, stop=['"location"'])
    assert reply.choices[0].message.content == full[:full.index('"location"')]
    assert reply.choices[0].finish_reason == "stop"


def test_temperature_samples_and_seed_repeats(url, local_hf, records):
    messages = user(records[1]["instruction"])
    greedy, _, _ = local_hf(messages)
    sdk = client(url)
    answers = [sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=1.5, seed=seed)
               .choices[0].message.content for seed in (1, 2, 3, 1)]
    assert answers[0] == answers[3], "the same seed gives the same sample"
    assert any(a != greedy[:len(a)] for a in answers), "temperature > 0 samples instead of decoding greedily"


def test_concurrent_requests_are_all_answered(url, local_hf, records):
    expected = [local_hf(user(r["instruction"]), 16)[0] for r in records[:3]]
    sdk = client(url)

    def ask(record):
        return sdk.chat.completions.create(model=MODEL, messages=user(record["instruction"]), max_tokens=16).choices[0].message.content

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(ask, records[:3])) == expected


def test_icl_engines_through_the_server_match_local_engines(url, records):
    """ChatGPT engine (HTTP) vs the Qwen engine (in-process): same messages, same greedy answer."""
    from deepke_llm_core.icl import EngineOptions, Sampling, build_icl_prompt, create_engine, load_demos

    api = create_engine("ChatGPT", EngineOptions(model_id=MODEL, base_url=url, api_key="unused-local", timeout=30))
    local = create_engine("Qwen", EngineOptions(model_id=str(tiny_base_path())))
    prompt = build_icl_prompt("ner", "en", "Maria Garcia was born in Paris.", labels=["person", "location"],
                              examples=load_demos("ner", "en"))
    sampling = Sampling(temperature=0.0, max_tokens=48)
    for messages in (local.messages(prompt), user(records[2]["instruction"])):
        remote, here = api.complete(messages, sampling), local.complete(messages, sampling)
        assert remote.text == here.text and remote.prompt_tokens == here.prompt_tokens > 0


def test_icl_batch_through_the_server_equals_deepke_llm_infer(url, records, tmp_path, monkeypatch):
    from deepke_llm_core.cli import main as deepke_llm
    from deepke_llm_core.evaluate import evaluate_records

    monkeypatch.setenv("OPENAI_API_KEY", "unused-local")
    test_file = write_lines(tmp_path / "test.json", records[:4])
    assert deepke_llm(["infer", "--model_name_or_path", str(tiny_base_path()), "--input_file", str(test_file),
                       "--output_file", str(tmp_path / "infer.json"), "--max_new_tokens", "128"]) == 0
    assert deepke_llm(["icl", "--engine", "ChatGPT", "--model_id", MODEL, "--base_url", url, "--input_file", str(test_file),
                       "--output_file", str(tmp_path / "icl.json"), "--max_tokens", "128", "--no_cache",
                       "--no-progress"]) == 0
    infer, icl = read_lines(tmp_path / "infer.json"), read_lines(tmp_path / "icl.json")
    assert [r["output"] for r in icl] == [r["output"] for r in infer]
    assert evaluate_records(icl, "NER")["total"]["F1"] > 0, "the tiny base really extracts through the server"


def test_base_plus_lora_adapter_is_served_as_loaded_locally(url, records, tmp_path):
    """An adapter that visibly changes the base: served answers equal base+adapter generating in-process."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from deepke_llm_core.engines import Sampling, TransformersEngine

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base_path()),
                              LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "my-adapter")
    engine = TransformersEngine.load(tiny_base_path(), str(tmp_path / "my-adapter"))
    base_url, stop = start_server(tiny_base_path(), tmp_path / "my-adapter")
    try:
        sdk = client(base_url)
        assert [m.id for m in sdk.models.list().data] == ["my-adapter"]
        messages = user(records[0]["instruction"])
        expected = engine.generate([messages], Sampling(max_tokens=24))[0].text
        served = sdk.chat.completions.create(model="my-adapter", messages=messages, max_tokens=24).choices[0].message.content
    finally:
        stop()
    base_answer = client(url).chat.completions.create(model=MODEL, messages=messages, max_tokens=24)
    assert served == expected and base_answer.choices[0].message.content != expected, "the adapter changes the answer"


BAD = [
    (b"{not json", "not valid JSON"),
    ([1, 2], "must be a JSON object"),
    ({"messages": user("hi")}, "'model' is required"),
    ({"model": MODEL}, "'messages' must be a non-empty list"),
    ({"model": MODEL, "messages": [{"role": "bot", "content": "hi"}]}, r"messages\[0\]\.role must be one of"),
    ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, r"messages\[0\]\.content must be a string"),
    ({"model": MODEL, "messages": [*user("hi"), {"role": "assistant", "content": "x"}]}, "last message must have role 'user'"),
    ({"model": MODEL, "messages": user("hi"), "max_tokens": 0}, "'max_tokens' must be an integer >= 1"),
    ({"model": MODEL, "messages": user("hi"), "max_tokens": "8"}, "'max_tokens' must be an integer"),
    ({"model": MODEL, "messages": user("hi"), "temperature": 3}, r"'temperature' must be a number in \[0, 2\]"),
    ({"model": MODEL, "messages": user("hi"), "top_p": 0}, r"'top_p' must be a number in \(0, 1\]"),
    ({"model": MODEL, "messages": user("hi"), "stream": True}, "streaming is not supported"),
    ({"model": MODEL, "messages": user("hi"), "n": 2}, "only n=1 is supported"),
    ({"model": MODEL, "messages": user("hi"), "stop": 7}, "'stop' must be a non-empty string"),
    ({"model": MODEL, "messages": user("word " * 3000)}, "the model's context is 2048"),
]


@pytest.mark.parametrize("body, message", BAD, ids=[m.split()[0].strip("'\\") + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_requests_get_400_and_a_clear_message(url, body, message):
    status, payload = post(url, body)
    assert status == 400 and payload["error"]["type"] == "invalid_request_error"
    assert re.search(message, payload["error"]["message"]), payload


def test_sdk_raises_bad_request_with_the_servers_message(url):
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client(url).chat.completions.create(model=MODEL, messages=user("hi"), temperature=5)


def test_unknown_model_and_route_are_404(url):
    status, payload = post(url, {"model": "gpt-4o-mini", "messages": user("hi")})
    assert status == 404 and "serves 'tiny-ie-base'" in payload["error"]["message"]
    assert post(url, {}, path="/completions")[0] == 404


def test_api_key_is_required_when_set(chat_model):
    base_url, stop = start_server(chat_model, api_key="local-key")
    try:
        with pytest.raises(openai.AuthenticationError):
            client(base_url).models.list()
        sdk = openai.OpenAI(base_url=base_url, api_key="local-key", max_retries=0)
        assert sdk.chat.completions.create(model=MODEL, messages=user("hi"), max_tokens=2).usage.completion_tokens <= 2
    finally:
        stop()
    stop()  # idempotent


def test_parse_chat_request_defaults():
    request = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                                         {"type": "text", "text": "b"}]}],
                                  "max_completion_tokens": 7, "max_tokens": 3}, default_max_tokens=99)
    assert request.messages == user("ab") and request.max_tokens == 7 and request.temperature == 0.0
    assert parse_chat_request({"model": "m", "messages": user("x")}, default_max_tokens=99).max_tokens == 99


@pytest.mark.parametrize("server", ["builtin", "transformers"])
def test_cli_port_in_use_is_a_one_line_error(capsys, server):
    from deepke_llm_core.cli import main as deepke_llm

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        status = deepke_llm(["serve", "--model_name_or_path", str(tiny_base_path()), "--server", server,
                             "--port", str(busy.getsockname()[1])])
    assert status == 2 and "deepke-llm serve: error: cannot listen on 127.0.0.1:" in capsys.readouterr().err


class Launched:
    """``deepke-llm serve ...`` in a subprocess: the URL and model id it printed; Ctrl-C on exit."""

    def __init__(self, *flags: str, env: dict | None = None):
        command = [sys.executable, "-m", "deepke_llm_core", "serve", "--port", "0", *flags]
        self.process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                                             "HF_HUB_OFFLINE": "1", **(env or {})})
        self.url = self.model = None
        deadline = time.time() + 300
        while self.url is None and time.time() < deadline:
            line = self.process.stderr.readline()
            assert line or self.process.poll() is None, "the server exited before it printed its URL"
            match = re.search(r"serving '([^']+)'.* at (http://127\.0\.0\.1:\d+/v1)", line)
            if match:
                self.model, self.url = match.groups()
        assert self.url, "no URL printed within 300 s"

    def ready(self) -> openai.OpenAI:
        """A client, once the server answers (a library server binds its port a few seconds after the launch)."""
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(self.url.removesuffix("/v1") + "/health", timeout=5).read()
                return client(self.url)
            except (urllib.error.URLError, ConnectionError):
                assert self.process.poll() is None and time.time() < deadline, "the server never answered /health"
                time.sleep(1)

    def stop(self) -> int:
        try:
            self.process.send_signal(signal.SIGINT)
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.stderr.close()


def test_cli_builtin_server_answers_and_stops_on_ctrl_c():
    served = Launched("--model_name_or_path", str(tiny_base_path()), "--server", "builtin", "--model_id", "cli-served")
    try:
        assert served.model == "cli-served"
        sdk = served.ready()
        assert [m.id for m in sdk.models.list().data] == ["cli-served"]
        assert sdk.chat.completions.create(model="cli-served", messages=user("hi"), max_tokens=3).usage.completion_tokens <= 3
    finally:
        assert served.stop() == 0


@pytest.mark.slow
def test_deepke_llm_serve_runs_transformers_serve_with_the_engines_greedy_answers(local_hf, records, tmp_path):
    """The default server is the library's: /v1/chat/completions from the tiny base, equal to the local engine,
    whole answers and answers cut by max_tokens alike (transformers' own parser strips their whitespace)."""
    pytest.importorskip("fastapi")
    served = Launched("--model_name_or_path", str(tiny_base_path()), env={"DEEPKE_LLM_CACHE": str(tmp_path)})
    try:
        assert served.model.startswith(str(tmp_path / "serve" / "tiny-ie-base-"))
        sdk = served.ready()
        for record in records[:3]:
            messages = user(record["instruction"])
            for max_tokens, finish in ((128, "stop"), (7, "length")):
                expected, ids, _ = local_hf(messages, max_tokens)
                reply = sdk.chat.completions.create(model=served.model, messages=messages, max_tokens=max_tokens,
                                                    temperature=0)
                assert reply.choices[0].message.content == expected and expected.startswith("{")
                assert reply.choices[0].finish_reason == finish and reply.usage.prompt_tokens == len(ids)
    finally:
        assert served.stop() == 0


@pytest.mark.slow
def test_an_adapter_with_a_legacy_template_is_merged_and_served_as_loaded_in_process(records, tmp_path):
    """transformers serve loads no adapter folder and knows no legacy template: the launcher merges the adapter and
    writes its stored template (alpaca) as the chat template; the answers equal base + adapter in this process."""
    pytest.importorskip("fastapi")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deepke_llm_core.engines import Sampling, TransformersEngine
    from deepke_llm_core.run_info import write_run_info

    adapter = tmp_path / "alpaca-adapter"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base_path()),
                              LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_base_path()).save_pretrained(adapter)
    write_run_info(adapter, {"template": "alpaca", "finetuning_type": "lora", "system_prompt": None})
    engine = TransformersEngine.load(tiny_base_path(), str(adapter))
    assert engine.template == "alpaca"
    served = Launched("--model_name_or_path", str(tiny_base_path()), "--checkpoint_dir", str(adapter),
                      env={"DEEPKE_LLM_CACHE": str(tmp_path / "cache")})
    try:
        assert served.model.startswith(str(tmp_path / "cache" / "serve" / "alpaca-adapter-"))
        sdk = served.ready()
        for record in records[:2]:
            messages = user(record["instruction"])
            expected = engine.generate([messages], Sampling(max_tokens=32))[0]
            reply = sdk.chat.completions.create(model=served.model, messages=messages, max_tokens=32, temperature=0)
            assert reply.choices[0].message.content == expected.text
            assert reply.usage.prompt_tokens == expected.prompt_tokens
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize("template", sorted(__import__("deepke_llm_core.prompts", fromlist=["TEMPLATES"]).TEMPLATES))
def test_every_legacy_template_renders_through_its_chat_template_as_render_prompt_does(template):
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from transformers import AutoTokenizer

    from deepke_llm_core.prompts import render_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_path())
    jinja = ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"]).from_string(
        legacy_chat_template(template, tokenizer))
    query = 'A {"input": "Tom {% raw %} {{ x }} lives in Paris"} query'
    for system in (None, "Be brief.", ""):
        messages = ([{"role": "system", "content": system}] if system is not None else []) + user(query)
        assert jinja.render(messages=messages) == render_prompt(query, template, tokenizer=tokenizer, system=system)


def test_the_vllm_command_serves_the_adapter_by_name_with_the_template_file(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 32}))
    command = vllm_serve_command("base", "127.0.0.1", 8001, served_name="ner", adapter=str(tmp_path / "adapter"),
                                 chat_template="t.jinja", bits=4)
    assert command[:3] == ["vllm", "serve", "base"] and command[command.index("--served-model-name") + 1] == "ner-base"
    assert command[command.index("--lora-modules") + 1] == f"ner={tmp_path / 'adapter'}"
    assert command[command.index("--max-lora-rank") + 1] == "32" and "--enable-lora" in command
    assert command[command.index("--chat-template") + 1] == "t.jinja"
    assert command[command.index("--quantization") + 1] == "bitsandbytes"


@pytest.mark.parametrize("flags, message", [
    (["--api_key_env", "HOME"], "transformers serve has no API keys"),
    (["--model_id", "x"], "names the model by its folder"),
])
def test_what_transformers_serve_cannot_do_is_refused_with_the_way_out(capsys, flags, message):
    from deepke_llm_core.cli import main as deepke_llm

    assert deepke_llm(["serve", "--model_name_or_path", str(tiny_base_path()), "--port", "0", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "--server builtin" in err


def test_a_p_tuning_adapter_is_sent_to_the_builtin_server(tmp_path):
    from deepke_llm_core.run_info import write_run_info
    from deepke_llm_core.serve import served_folder

    write_run_info(tmp_path, {"template": "auto", "finetuning_type": "p_tuning"})
    with pytest.raises(ValueError, match="P-Tuning adapter cannot be merged.*--server builtin"):
        served_folder(str(tiny_base_path()), str(tmp_path))


# ---- the builtin server's transport (issue 11) --------------------------------------------------------------------


def raw_request(url: str, head: bytes, body: bytes = b"", timeout: float = 30) -> bytes:
    """Send bytes as they are (a lying Content-Length included) and return what the server answers first."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + head + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 40:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_a_negative_content_length_does_not_bypass_the_body_limit(url):
    body = json.dumps({"model": MODEL, "messages": user("word " * 100)}).encode()
    answer = raw_request(url, b"Content-Length: -1\r\n", body)
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert b"Content-Length header must be >= 0" in answer


def test_a_client_that_sends_less_than_it_declared_gets_408_and_frees_its_thread(chat_model, monkeypatch):
    monkeypatch.setattr(builtin_server, "READ_TIMEOUT", 1.0)
    base_url, stop = start_server(chat_model)
    try:
        started = time.time()
        answer = raw_request(base_url, b"Content-Length: 1000\r\n", b'{"model": "tiny', timeout=30)
        assert answer.split(b" ")[1] == b"408" and time.time() - started < 15, answer[:100]
    finally:
        stop()


def test_an_oversized_body_is_drained_and_answered_413(url):
    body = b'{"pad": "' + b"x" * (builtin_server.MAX_BODY_BYTES + 1024) + b'"}'
    request = urllib.request.Request(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413 and "the limit is" in json.loads(refused.value.read())["error"]["message"]


def test_fifty_simultaneous_connections_are_queued_and_all_answered(chat_model):
    """50 clients connect while the server is busy (not accepting): the kernel must queue them all (the stdlib's
    backlog of 5 queues 6 and drops the others' handshakes), and each gets its answer once the server accepts."""
    import threading

    httpd, base_url = builtin_server._listen(chat_model, "127.0.0.1", 0, None, False)
    port = httpd.server_address[1]

    def connect(_):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            return None

    with ThreadPoolExecutor(50) as pool:
        socks = list(pool.map(connect, range(50)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        connected = [sock for sock in socks if sock is not None]
        assert len(connected) == 50, f"only {len(connected)} of 50 connections were queued"
        for sock in connected:
            sock.settimeout(60)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = [sock.recv(100) for sock in connected]
        assert all(a.startswith(b"HTTP/1.0 200") for a in answers)
    finally:
        for sock in socks:
            if sock is not None:
                sock.close()
        httpd.shutdown()
        httpd.server_close()
