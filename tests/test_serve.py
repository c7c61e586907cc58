"""``deepke_llm_core.serve`` on the committed tiny IE base, called through the real openai SDK and the ICL engines.

Proves: greedy answers equal what the transformers engine generates locally for the same prompt, and what
``deepke-llm infer`` writes for the same records; ``max_tokens``, ``stop``, ``temperature``/``seed`` and ``usage``
behave as the OpenAI API documents; bad requests get a 4xx with a message naming the field; concurrent requests
are all answered; a base plus a LoRA adapter is served as it loads in-process; ``deepke-llm serve`` starts, answers
and stops on Ctrl-C.
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

from deepke_llm_core.serve import ChatModel, parse_chat_request, start_server
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


def test_cli_port_in_use_is_a_one_line_error(capsys):
    from deepke_llm_core.cli import main as deepke_llm

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        status = deepke_llm(["serve", "--model_name_or_path", str(tiny_base_path()), "--port", str(busy.getsockname()[1])])
    assert status == 2 and "deepke-llm serve: error: cannot listen on 127.0.0.1:" in capsys.readouterr().err


def test_cli_serve_answers_and_stops_on_ctrl_c():
    command = [sys.executable, "-m", "deepke_llm_core", "serve", "--model_name_or_path", str(tiny_base_path()),
               "--port", "0", "--model_id", "cli-served"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    try:
        deadline, base_url = time.time() + 120, None
        while base_url is None and time.time() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the server exited before it printed its URL"
            match = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
            base_url = match and match.group(1)
        assert base_url, "no URL printed within 120 s"
        assert [m.id for m in client(base_url).models.list().data] == ["cli-served"]
        assert client(base_url).chat.completions.create(model="cli-served", messages=user("hi"), max_tokens=3).usage.completion_tokens <= 3
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
