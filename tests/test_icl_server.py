"""A real OpenAI-compatible HTTP server on 127.0.0.1 answering from the tiny model, and the engine tests against it.

``FakeOpenAI`` speaks ``POST /v1/chat/completions`` (the OpenAI response shape, ``usage`` included) and can be told
to fail: ``failures`` is a queue of modes consumed one per request (``"429"``, ``"500"``, ``"400"``, ``"hang"``,
``"garbage"``), ``always`` fails every request. Temperature 0 is greedy; otherwise it samples with a seed taken from
the request, so answers differ between records yet repeat for the same request. The other ICL test files import
the ``openai_server`` fixture from here. No test touches the network: ``OPENAI_BASE_URL`` is set to this server.
"""

from __future__ import annotations


import pytest

from deepke_llm_core.icl import EndpointError, EngineOptions, Sampling, create_engine

from .icl_server import SECRET, api_engine


def test_server_speaks_the_protocol_and_receives_the_key(openai_server):
    engine = api_engine(openai_server)
    messages = engine.messages("Input: Tom lives in Paris.\nOutput: ")
    first = engine.complete(messages, Sampling(temperature=0.7, max_tokens=8))
    again = engine.complete(messages, Sampling(temperature=0.7, max_tokens=8))
    assert first.text == again.text and first.prompt_tokens > 0
    body = openai_server.bodies[0]
    assert body["model"] == "tiny" and body["messages"] == [{"role": "user", "content": messages[0]["content"]}]
    assert body["temperature"] == 0.7 and body["max_tokens"] == 8
    assert openai_server.auth[0] == f"Bearer {SECRET}"


@pytest.mark.parametrize("failure", ["429", "500", "garbage"])
def test_retries_then_succeeds(openai_server, failure):
    openai_server.failures = [failure, failure]
    completion = api_engine(openai_server).complete([{"role": "user", "content": "hi"}], Sampling(max_tokens=4))
    assert openai_server.count == 3 and isinstance(completion.text, str)


def test_timeout_is_retried(openai_server):
    openai_server.failures = ["hang"]
    completion = api_engine(openai_server, timeout=0.3).complete([{"role": "user", "content": "hi"}], Sampling(max_tokens=4))
    assert openai_server.count == 2 and isinstance(completion.text, str)


def test_timeout_gives_up_with_a_clear_error(openai_server):
    openai_server.always = "hang"
    with pytest.raises(EndpointError, match=r"no answer within --timeout 0.2s.*gave up after 2 attempts"):
        api_engine(openai_server, timeout=0.2, max_retries=1).complete([{"role": "user", "content": "x"}], Sampling())
    assert openai_server.count == 2


def test_rejected_key_is_not_echoed(openai_server):
    openai_server.always = "401echo"
    with pytest.raises(EndpointError, match="HTTP 401") as info:
        api_engine(openai_server).complete([{"role": "user", "content": "x"}], Sampling())
    assert SECRET not in str(info.value) and "***" in str(info.value)


def test_client_errors_are_not_retried(openai_server):
    openai_server.always = "400"
    with pytest.raises(EndpointError, match="HTTP 400") as info:
        api_engine(openai_server).complete([{"role": "user", "content": "x"}], Sampling())
    assert openai_server.count == 1 and info.value.status == 400


def test_malformed_body_error_names_what_came_back(openai_server):
    openai_server.always = "garbage"
    with pytest.raises(EndpointError, match="not an OpenAI chat-completion JSON body.*upstream proxy error"):
        api_engine(openai_server, max_retries=1).complete([{"role": "user", "content": "x"}], Sampling())
    assert openai_server.count == 2


def test_deepseek_engine_and_key_from_environment(openai_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("DEEPKE_API_KEY", "sk-from-deepke-env")
    engine = api_engine(openai_server, name="DeepSeek")
    engine.complete([{"role": "user", "content": "x"}], Sampling(max_tokens=2))
    assert openai_server.auth == ["Bearer sk-from-deepke-env"]
    assert "sk-from-deepke-env" not in repr(engine) + repr(engine.options)


def test_missing_key_is_a_clear_error(monkeypatch):
    for name in ("OPENAI_API_KEY", "DEEPKE_API_KEY", "DEEPSEEK_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="needs an API key: pass --api_key or set OPENAI_API_KEY or DEEPKE_API_KEY"):
        create_engine("ChatGPT", EngineOptions())
    # A self-hosted endpoint given by --base_url may take no key (vLLM, transformers serve): "EMPTY" is sent.
    assert create_engine("ChatGPT", EngineOptions(base_url="http://127.0.0.1:9/v1"))._key == "EMPTY"
